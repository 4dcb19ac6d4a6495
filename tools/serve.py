#!/usr/bin/env python
"""Start the browser demo (chairseg.serve) on http://127.0.0.1:8000/::

    tools/serve.py --config-file configs/ChairSegments/unet.yaml MODEL.WEIGHTS output/model_final.pth
    tools/serve.py --weights output/main_job/model_final.pth   # the run folder's config.yaml

Weights in a run folder bring that run's model keys and class names (its ``config.yaml``;
without ``--config-file`` it is the config), and a line says so. Several models: repeat
``--config-file`` (each with its own ``--weights``, in the same order; trailing KEY VALUE
opts apply to all) and/or add exported graphs with ``--onnx model.onnx`` (ONNX Runtime,
settings from ``model.onnx.json``). The page offers a choice when there are several, and a
choice of inference: as configured, resized, whole image or sliding window
(TEST.SLIDING_WINDOW.* set the tiles; uploads over --max-side are scaled down first). It
listens on 127.0.0.1 only unless ``--host`` says otherwise.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from detectron2.utils.logger import setup_logger

import semseg_heads  # noqa: F401  (registers models and datasets)
from chairseg.serve import Limits, ServedModel, create_app, generated_samples
from semseg_heads.config import config_for_weights, model_metadata
from semseg_heads.engine import Predictor

logger = logging.getLogger("semseg_heads.serve")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config-file", action="append", default=[], metavar="FILE", help="a model's config (repeatable)"
    )
    parser.add_argument(
        "--weights", action="append", default=[], metavar="FILE",
        help="MODEL.WEIGHTS of the config files, in their order (repeatable); alone, each run "
        "folder's config.yaml is the config",
    )  # fmt: skip
    parser.add_argument(
        "--onnx", action="append", default=[], metavar="FILE", help="an exported .onnx (repeatable)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--samples", type=int, default=3, help="generated chair images offered as samples")
    parser.add_argument(
        "--max-side", type=int, default=Limits.max_side, help="longer sides are scaled down to this"
    )
    parser.add_argument(
        "--max-megapixels", type=float, default=Limits.max_pixels / 1e6, help="larger images are refused"
    )
    parser.add_argument(
        "--max-mb", type=int, default=Limits.max_bytes // 2**20, help="larger files are refused"
    )
    parser.add_argument(
        "--max-aspect", type=float, default=Limits.max_aspect,
        help="longer side / shorter side; more elongated images are refused",
    )  # fmt: skip
    parser.add_argument(
        "--queue-size", type=int, default=Limits.queue_size,
        help="uploads admitted at once (processed one at a time); more get HTTP 503 + Retry-After",
    )  # fmt: skip
    parser.add_argument(
        "opts", default=[], nargs=argparse.REMAINDER, help="config overrides for every config"
    )
    return parser


def build_models(args: argparse.Namespace) -> list[ServedModel]:
    if not args.config_file and not args.weights and not args.onnx:
        raise SystemExit("error: give at least one --config-file, --weights or --onnx")
    if args.weights and args.config_file and len(args.weights) != len(args.config_file):
        raise SystemExit(
            f"error: {len(args.weights)} --weights for {len(args.config_file)} --config-file; "
            "give one per config"
        )
    models = []
    # --weights alone: each run folder's config.yaml is its config.
    config_files = args.config_file or [""] * len(args.weights)
    for i, config_file in enumerate(config_files):
        weights = args.weights[i] if args.weights else ""
        try:
            # weights in a run folder: that run's model keys and class names, said so
            cfg, run = config_for_weights(config_file, list(args.opts), weights=weights)
        except (FileNotFoundError, ValueError) as e:
            raise SystemExit(f"error: {e}") from None
        if run is not None:
            print(run.message(), flush=True)
        cfg.MODEL.DEVICE = "cpu"
        cfg.freeze()
        predictor = Predictor(cfg)
        if config_file:
            name = os.path.splitext(os.path.basename(config_file))[0]
        else:
            name = os.path.basename(os.path.dirname(os.path.abspath(run.path)))
        # The page's inference choices; with TEST.AUG the augmented images run as configured.
        inference = None if predictor.tta is not None else predictor.inference
        models.append(ServedModel(_unique(name, models), predictor, model_metadata(cfg), inference))
    if args.onnx:
        from semseg_heads.deploy import ONNXPredictor

        for path in args.onnx:
            predictor = ONNXPredictor(path)
            name = os.path.splitext(os.path.basename(path))[0] + " (ONNX Runtime)"
            models.append(
                ServedModel(_unique(name, models), predictor, predictor.metadata, predictor.inference)
            )
    return models


def _unique(name: str, models: list[ServedModel]) -> str:
    taken = {m.name for m in models}
    n, candidate = 2, name
    while candidate in taken:
        candidate, n = f"{name} #{n}", n + 1
    return candidate


def main(argv: list[str] | None = None) -> int:
    setup_logger(name="semseg_heads")
    args = get_parser().parse_args(argv)
    import uvicorn

    limits = Limits(
        max_bytes=args.max_mb * 2**20,
        max_pixels=int(args.max_megapixels * 1e6),
        max_side=args.max_side,
        max_aspect=args.max_aspect,
        queue_size=args.queue_size,
    )
    try:
        app = create_app(build_models(args), generated_samples(args.samples) if args.samples else {}, limits)
    except ValueError as e:  # e.g. --queue-size 0
        print(f"error: {e}", file=sys.stderr)
        return 2
    # The worker thread runs Python-heavy drawing while the event loop answers: hand the GIL
    # over every 1 ms instead of 5 ms so /healthz and the page wait less behind it.
    sys.setswitchinterval(0.001)
    print(f"semseg_heads demo on http://{args.host}:{args.port}/ (Ctrl+C stops it)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
