"""CPU inference paths side by side, one BGR image in and ``sem_seg`` out through each:

- ``eager-fp32``: today's ``Predictor``;
- ``eager-bf16``: ``Predictor`` under ``SOLVER.AMP`` (bf16 autocast on the CPU, issue 11), and
  ``eager-bf16+cl`` with ``MODEL.CHANNELS_LAST`` too;
- ``ort-fp32``: ``ONNXPredictor`` on the exported graph (ONNX Runtime, all graph optimisations);
- ``ort-int8``: the same graph with ONNX Runtime's static QDQ int8 quantisation, calibrated on
  generated chair images, first and last conv kept in fp32; every path is reported with its
  argmax agreement against eager fp32, and only paths keeping >= 99.9% count for the winner.

All paths share the weights, the image, the thread count and the pre/post-processing; they run
interleaved in blocks so background load hits them alike; medians are reported. Usage::

    python -m chairseg.measure.inference_paths --config-file configs/ChairSegments/unet.yaml \\
        --size 256 MODEL.WEIGHTS ...
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from chairseg.measure.timing import time_interleaved

__all__ = ["compare_inference_paths", "ort_inference_fns", "quantize_int8"]

MIN_AGREEMENT = 0.999


def quantize_int8(fp32_path: str, out_path: str, calibration: Sequence[np.ndarray]) -> None:
    """Static QDQ int8 quantisation (per-channel weights) calibrated on ``calibration`` batches."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"image": x.astype(np.float32)} for x in calibration])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    import onnx

    prepped = out_path + ".pre.onnx"
    quant_pre_process(fp32_path, prepped, skip_symbolic_shape=True)
    # The first conv sees raw normalised pixels and the last one writes the logits whose
    # argmax is the answer: both stay fp32 (the usual choice for the most sensitive layers).
    convs = [n.name for n in onnx.load(prepped).graph.node if n.op_type in ("Conv", "ConvTranspose")]
    try:
        quantize_static(
            prepped,
            out_path,
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
            nodes_to_exclude=[convs[0], convs[-1]] if len(convs) > 1 else [],
        )
    finally:
        os.remove(prepped)


def ort_inference_fns(
    model: torch.nn.Module, batch: torch.Tensor, threads: int | None = None, int8: bool = False
) -> dict[str, Callable[[], object]]:
    """Timing callables for a benchmark's inference table: ONNX Runtime on ``model`` exported
    (dynamo exporter, as ``tools/export_model.py``) and run on ``batch`` (N, 3, H, W) 0-255
    pixels; ``int8`` adds the quantised graph. Beside eager ``model(list[dict])`` they compare
    like with like: the graph also normalises, pads and crops."""
    from semseg_heads.deploy.export import SemSegExportWrapper, export_onnx
    from semseg_heads.deploy.predictor import ort_session

    x = batch.float().numpy()
    fns: dict[str, Callable[[], object]] = {}
    # The sessions hold their graphs in memory: the files go with the folder.
    with tempfile.TemporaryDirectory(prefix="semseg_ort_") as folder:
        wrapper = SemSegExportWrapper(model.float().eval()).eval()
        path = os.path.join(folder, "model.onnx")
        export_onnx(wrapper, path, batch[:2].float())
        session = ort_session(path, threads)
        fns["ort-fp32/graph"] = lambda: session.run(["sem_seg"], {"image": x})
        if int8:
            q_path = os.path.join(folder, "model.int8.onnx")
            quantize_int8(path, q_path, [x[i : i + 1] for i in range(min(len(x), 8))])
            q_session = ort_session(q_path, threads)
            fns["ort-int8/graph"] = lambda: q_session.run(["sem_seg"], {"image": x})
    return fns


def compare_inference_paths(
    config_file: str,
    opts: Sequence[str] = (),
    size: int = 256,
    rounds: int = 4,
    block: int = 3,
    threads: int | None = None,
    int8: bool = True,
) -> dict[str, Any]:
    """Time each path of the module doc on one ``size`` x ``size`` generated chair image."""
    if threads:
        torch.set_num_threads(threads)
    threads = torch.get_num_threads()
    # Weights and exported graphs live in a folder removed at the end (the sessions and models
    # hold what they need in memory by then).
    with tempfile.TemporaryDirectory(prefix="semseg_paths_") as folder:
        return _compare_in(folder, config_file, opts, size, rounds, block, threads, int8)


def _compare_in(
    folder: str,
    config_file: str,
    opts: Sequence[str],
    size: int,
    rounds: int,
    block: int,
    threads: int,
    int8: bool,
) -> dict[str, Any]:
    from chairseg.data.synthetic import render_sample
    from semseg_heads.config import get_semseg_heads_cfg
    from semseg_heads.deploy.export import export_model
    from semseg_heads.deploy.predictor import ONNXPredictor
    from semseg_heads.engine import Predictor

    # The image is resized to MIN_SIZE_TEST by every path: make that the measured size.
    size_opts = ["INPUT.MIN_SIZE_TEST", str(size), "INPUT.MAX_SIZE_TEST", str(size), "MODEL.DEVICE", "cpu"]
    cfg = get_semseg_heads_cfg(config_file, [*opts, *size_opts])
    torch.manual_seed(0)
    eager = Predictor(cfg)
    if not cfg.MODEL.WEIGHTS:  # identical weights for every path without a weights file
        weights = os.path.join(folder, "weights.pth")
        torch.save({"model": eager.model.state_dict()}, weights)
        cfg.MODEL.WEIGHTS = weights
    bf16_cfg = cfg.clone()
    bf16_cfg.SOLVER.AMP.ENABLED = True
    bf16_cfg.SOLVER.AMP.PRECISION = "bfloat16"
    bf16_cl_cfg = bf16_cfg.clone()
    bf16_cl_cfg.MODEL.CHANNELS_LAST = True
    onnx_path = os.path.join(folder, "model.onnx")
    export_model(cfg, onnx_path, model=eager.model, sizes=((1, size, size),))
    ort_fp32 = ONNXPredictor(onnx_path, threads)

    rng = np.random.default_rng(0)
    image = np.ascontiguousarray(render_sample(rng, size)[0][:, :, ::-1])  # BGR, as Predictor takes
    paths: dict[str, Callable[[np.ndarray], dict]] = {
        "eager-fp32": eager,
        "eager-bf16": Predictor(bf16_cfg),
        "eager-bf16+cl": Predictor(bf16_cl_cfg),
        "ort-fp32": ort_fp32,
    }
    if int8:
        calibration = [ort_fp32.preprocess(render_sample(rng, size)[0][:, :, ::-1]) for _ in range(16)]
        q_path = os.path.join(folder, "model.int8.onnx")
        quantize_int8(onnx_path, q_path, calibration)
        with open(q_path + ".json", "w") as f, open(onnx_path + ".json") as src:
            f.write(src.read())
        paths["ort-int8"] = ONNXPredictor(q_path, threads)

    reference = eager(image)["sem_seg"].argmax(0)
    agreement = {
        name: float((p(image)["sem_seg"].argmax(0) == reference).float().mean()) for name, p in paths.items()
    }
    calls = {n: (lambda p=p: p(image)) for n, p in paths.items()}
    times = time_interleaved(calls, warmup=2, rounds=rounds, per_round=block)
    base = float(np.median(times["eager-fp32"]))
    keeps = [n for n in times if agreement[n] >= MIN_AGREEMENT]
    rows = {
        name: {
            "median_ms": 1000 * float(np.median(t)),
            "speedup_vs_eager_fp32": base / float(np.median(t)),
            "argmax_agreement_vs_eager_fp32": agreement[name],
        }
        for name, t in times.items()
    }
    return {
        "config": config_file,
        "opts": list(opts),
        "image": f"{size}x{size}",
        "threads": threads,
        "timed_calls_per_path": rounds * block,
        "rows": rows,
        "fastest_keeping_argmax": min(keeps, key=lambda n: rows[n]["median_ms"]),
        "load_avg_1min": os.getloadavg()[0],
    }


def format_paths(r: dict[str, Any]) -> str:
    lines = [
        f"{r['config']} {' '.join(r['opts'])}: one {r['image']} image per call, {r['threads']} threads, "
        f"{r['timed_calls_per_path']} timed calls per path (interleaved), "
        f"1-min load {r['load_avg_1min']:.2f}",
        f"    {'path':<12}{'median ms':>10}{'vs eager fp32':>15}{'argmax = fp32':>15}",
    ]
    for name, x in r["rows"].items():
        lines.append(
            f"    {name:<12}{x['median_ms']:10.1f}{x['speedup_vs_eager_fp32']:14.2f}x"
            f"{x['argmax_agreement_vs_eager_fp32']:15.4%}"
        )
    lines.append(f"    fastest path keeping the argmax (>= 99.9%): {r['fastest_keeping_argmax']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", default="configs/ChairSegments/unet.yaml")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--block", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-int8", action="store_true")
    p.add_argument("--json", default=None)
    p.add_argument("opts", nargs=argparse.REMAINDER, default=[])
    args = p.parse_args(argv)
    import semseg_heads  # noqa: F401  (registers the models)

    r = compare_inference_paths(
        args.config_file, args.opts, args.size, args.rounds, args.block, args.threads, not args.no_int8
    )
    print(format_paths(r))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
