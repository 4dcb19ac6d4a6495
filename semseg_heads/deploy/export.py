"""Export a semantic segmentor to ONNX or TorchScript, check it against PyTorch, describe it in JSON.

Which ONNX exporter: torch's ``dynamo=True`` exporter (``torch.export`` + onnxscript), the
default of ``torch.onnx.export`` since torch 2.9 and the one torch 2.14 maintains. The older
TorchScript-based exporter (``dynamo=False``, deprecated) fails on DeconvNet: tracing
``F.max_unpool2d`` with symbolic sizes raises inside its shape check. The dynamo exporter
decomposes ``max_unpool2d`` into ``ScatterND`` over the flattened planes, which keeps
PyTorch's per-plane switch indices exact; ONNX's own ``MaxUnpool`` is not used, and it
would need different indices anyway (ONNX ``MaxPool`` numbers positions across the whole
tensor, PyTorch within each ``(n, c)`` plane).

The graph (``SemSegExportWrapper``) takes ``image``: float32 ``(batch, 3, height, width)``,
0-255, channels in ``INPUT.FORMAT`` order, and returns ``sem_seg``: float32 logits
``(batch, NUM_CLASSES, height, width)``; batch, height and width are dynamic. Normalisation
and padding to ``size_divisibility`` are in the graph; resizing by ``INPUT.MIN_SIZE_TEST`` /
``MAX_SIZE_TEST`` (and back) is not, as in ``DefaultPredictor``: ``ONNXPredictor`` does it.
A JSON sidecar ``<file>.json`` records all of this.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.modeling import build_model
from torch import nn

from semseg_heads.checkpoint import SafeDetectionCheckpointer
from semseg_heads.config import model_metadata
from semseg_heads.modeling.sliding_window import InferenceSettings
from semseg_heads.utils.io import refuse_existing

from .wrapper import SemSegExportWrapper

__all__ = [
    "CHECK_SIZES",
    "ExportCheckError",
    "ExportError",
    "ExportReport",
    "SizeCheck",
    "build_export_model",
    "check_export",
    "export_model",
    "export_onnx",
    "export_torchscript",
    "locate_unexportable_layer",
    "sidecar_path",
]

logger = logging.getLogger(__name__)

FORMATS = ("onnx", "torchscript")
#: (batch, height, width) checked after export: square, odd and rectangular, two batch sizes.
CHECK_SIZES: tuple[tuple[int, int, int], ...] = ((1, 64, 64), (2, 45, 77), (1, 97, 33))
MIN_ARGMAX_AGREEMENT = 0.999


class ExportError(RuntimeError):
    """The model could not be exported; the message names the layer where it failed."""


class ExportCheckError(RuntimeError):
    """The exported model disagrees with PyTorch beyond the tolerance."""


@dataclass
class SizeCheck:
    """Exported vs PyTorch on one input size."""

    batch: int
    height: int
    width: int
    max_abs_diff: float
    max_abs_logit: float
    argmax_agreement: float


def sidecar_path(model_path: str) -> str:
    """``<model file>.json``: where the description of an exported graph lives."""
    return model_path + ".json"


def build_export_model(cfg: CfgNode) -> nn.Module:
    """``build_model(cfg)`` in eval mode with ``MODEL.WEIGHTS`` loaded (when set) safely."""
    model = build_model(cfg)
    if cfg.MODEL.WEIGHTS:
        SafeDetectionCheckpointer.for_inference(model, cfg).load(cfg.MODEL.WEIGHTS)
    return model.eval()


def _sample(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A deterministic image batch with structure (a bright block on noise), 0-255."""
    g = torch.Generator().manual_seed(seed + 1000 * height + width)
    x = torch.rand(batch, 3, height, width, generator=g) * 80
    x[:, :, height // 4 : 3 * height // 4, width // 5 : 4 * width // 5] += 150
    return x


def _dims_named(model_path: str) -> None:
    """Name the dynamic axes batch/height/width in the saved ONNX file (the exporter writes
    symbolic expressions such as ``Min(s73, 32*(...))`` for the output)."""
    import onnx

    proto = onnx.load(model_path)
    names = {0: "batch", 2: "height", 3: "width"}
    for value in list(proto.graph.input) + list(proto.graph.output):
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            if axis in names:
                dim.Clear()
                dim.dim_param = names[axis]
    onnx.save(proto, model_path)


def _export_onnx_raw(
    module: nn.Module, args: tuple, path: str | io.BytesIO | None, dynamic: bool, optimize: bool = True
) -> Any:
    dynamic_shapes = None
    if dynamic:
        dyn = torch.export.Dim.DYNAMIC
        dynamic_shapes = {"image": {0: dyn, 2: dyn, 3: dyn}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.onnx.export(
            module,
            args,
            path,
            dynamo=True,
            input_names=["image"] if dynamic else None,
            output_names=["sem_seg"] if dynamic else None,
            dynamic_shapes=dynamic_shapes,
            external_data=False,
            optimize=optimize,
            verbose=False,
        )


def _reason(error: BaseException) -> str:
    """The first informative line of an exporter error (it names the unsupported aten op)."""
    text = str(error)
    for pattern in (r"aten[.:][\w.]+", r"No decompositions registered[^\n]*", r"Unsupported[^\n]*"):
        found = re.search(pattern, text)
        if found:
            return found.group(0)
    return text.strip().splitlines()[0][:300] if text.strip() else type(error).__name__


def locate_unexportable_layer(
    module: nn.Module,
    example: torch.Tensor,
    try_export: Callable[[nn.Module, tuple, dict], None] | None = None,
) -> tuple[str, str]:
    """The deepest submodule that fails to export on its own, and the reason.

    Runs ``module`` once to record every submodule's inputs, then descends from the root into
    the first child that fails by itself, until none of the current module's children fails:
    the failure is then in that module's own ``forward`` (e.g. a functional op), so it is named.
    """
    if try_export is None:

        def try_export(m: nn.Module, args: tuple, kwargs: dict) -> None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(m, args, None, kwargs=kwargs, dynamo=True, optimize=False, verbose=False)

    recorded: dict[str, tuple[tuple, dict]] = {}
    handles = []
    for name, sub in module.named_modules():
        if name:

            def hook(m, args, kwargs, name=name):
                recorded.setdefault(name, (args, kwargs))

            handles.append(sub.register_forward_pre_hook(hook, with_kwargs=True))
    try:
        with torch.no_grad():
            module(example)
    finally:
        for h in handles:
            h.remove()

    def fails(m: nn.Module, args: tuple, kwargs: dict) -> str | None:
        try:
            try_export(m, args, kwargs)
        except Exception as e:  # any exporter failure counts: the aim is to find where
            return _reason(e)
        return None

    def called_children(m: nn.Module, prefix: str):
        # A child that is not called itself (e.g. a container, or a meta-architecture whose
        # parts the wrapper calls directly) stands in for its called descendants.
        for child_name, child in m.named_children():
            full = f"{prefix}.{child_name}" if prefix else child_name
            if full in recorded:
                yield full, child
            else:
                yield from called_children(child, full)

    path, current = "", module
    reason = fails(module, (example,), {}) or "export failed"
    while True:
        for full, child in called_children(current, path):
            child_reason = fails(child, *recorded[full])
            if child_reason is not None:
                path, current, reason = full, child, child_reason
                break
        else:
            return path or "<root>", f"{type(current).__name__}: {reason}"


def _layer_of_op(module: nn.Module, example: torch.Tensor, op: str) -> tuple[str, str] | None:
    """(module path, class name) of the module whose forward calls ``op`` (e.g.
    ``aten.histc.default``), read from ``torch.export``'s ``nn_module_stack``; None if not found."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.export(module, (example,))
    except Exception:
        return None
    for node in program.graph.nodes:
        stack = node.meta.get("nn_module_stack") if node.op == "call_function" else None
        if stack and str(node.target) == op:
            path, cls = list(stack.values())[-1]
            name = cls.__name__ if isinstance(cls, type) else str(cls).rsplit(".", 1)[-1]
            return path or "<root>", name
    return None


def _raise_export_error(wrapper: nn.Module, example: torch.Tensor, error: BaseException) -> None:
    reason = _reason(error)
    # Fast path: the exporter names an aten op that has no ONNX translation, and
    # torch.export's graph says which module called it. Otherwise search module by module.
    found = _layer_of_op(wrapper, example, reason) if reason.startswith("aten.") else None
    if found is not None:
        layer, reason = found[0], f"{found[1]}: {reason}"
    else:
        layer, reason = locate_unexportable_layer(wrapper, example)
    # The wrapper holds the model as ``model``: report the model's own module names.
    layer = layer[len("model.") :] if layer.startswith("model.") else layer
    raise ExportError(
        f"cannot export the model: layer '{layer}' ({reason}). Replace it with exportable ops "
        f"(see torch.onnx's supported operators) or export another config."
    ) from error


def export_onnx(wrapper: nn.Module, path: str, example: torch.Tensor, optimize: bool = True) -> None:
    """Write ``wrapper`` as ONNX with dynamic batch/height/width; ``ExportError`` names the layer.

    ``optimize=False`` skips onnxscript's graph optimiser (about half the export time; ONNX
    Runtime applies its own optimisations when it loads the graph either way).
    """
    try:
        _export_onnx_raw(wrapper, (example,), path, dynamic=True, optimize=optimize)
    except Exception as e:
        _raise_export_error(wrapper, example[:1], e)
    _dims_named(path)


def export_torchscript(wrapper: nn.Module, path: str, example: torch.Tensor) -> None:
    """Write ``wrapper`` traced to TorchScript (``torch.jit.trace``; shapes stay symbolic)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(wrapper, (example,), check_trace=False)
    except Exception as e:
        raise ExportError(f"cannot trace the model to TorchScript: {_reason(e)}") from e
    traced.save(path)


def onnx_runner(path: str) -> Callable[[np.ndarray], np.ndarray]:
    """``image (N, 3, H, W) float32 -> logits`` through ONNX Runtime's CPU provider."""
    import onnxruntime as ort

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return lambda x: session.run(["sem_seg"], {"image": x})[0]


def torchscript_runner(path: str) -> Callable[[np.ndarray], np.ndarray]:
    module = torch.jit.load(path).eval()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(x)).numpy()

    return run


def check_export(
    wrapper: nn.Module,
    run_exported: Callable[[np.ndarray], np.ndarray],
    sizes: Sequence[tuple[int, int, int]] = CHECK_SIZES,
    min_agreement: float = MIN_ARGMAX_AGREEMENT,
    rtol: float = 1e-3,
) -> list[SizeCheck]:
    """Compare the exported model with PyTorch at each ``(batch, height, width)``.

    Raises ``ExportCheckError`` when the argmax agrees on fewer than ``min_agreement`` of the
    pixels or the largest logit difference exceeds ``rtol`` times the largest logit (at least 1).
    """
    checks = []
    for batch, height, width in sizes:
        x = _sample(batch, height, width)
        with torch.no_grad():
            ref = wrapper(x).numpy()
        out = run_exported(x.numpy())
        if out.shape != ref.shape:
            raise ExportCheckError(
                f"exported model returns shape {out.shape} for input {tuple(x.shape)}, PyTorch {ref.shape}"
            )
        check = SizeCheck(
            batch,
            height,
            width,
            max_abs_diff=float(np.abs(out - ref).max()),
            max_abs_logit=float(np.abs(ref).max()),
            argmax_agreement=float((out.argmax(1) == ref.argmax(1)).mean()),
        )
        checks.append(check)
        logger.info(f"export check {batch}x{height}x{width}: {check}")
        if check.argmax_agreement < min_agreement or check.max_abs_diff > rtol * max(
            1.0, check.max_abs_logit
        ):
            raise ExportCheckError(
                f"exported model disagrees with PyTorch at batch {batch}, {height}x{width}: argmax "
                f"agreement {check.argmax_agreement:.5f} (need >= {min_agreement}), max |logit diff| "
                f"{check.max_abs_diff:.3g} (largest logit {check.max_abs_logit:.3g}, rtol {rtol})"
            )
    return checks


@dataclass
class ExportReport:
    """What ``export_model`` wrote and checked (also the sidecar JSON's content)."""

    file: str
    format: str
    exporter: str
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    preprocessing: dict[str, Any]
    classes: list[str]
    colors: list[list[int]]
    config_file: str
    weights: str
    torch_version: str
    checks: list[SizeCheck] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def export_model(
    cfg: CfgNode,
    output: str,
    format: str = "onnx",
    *,
    model: nn.Module | None = None,
    config_file: str = "",
    sizes: Sequence[tuple[int, int, int]] = CHECK_SIZES,
    overwrite: bool = False,
    optimize: bool = True,
) -> ExportReport:
    """Export ``cfg``'s model (or ``model``) to ``output``, check it, and write ``<output>.json``.

    The file is written to a temporary name and only renamed to ``output`` once it passes
    the check, so a failed export never leaves a file that looks usable. An existing
    ``output`` is an error unless ``overwrite``.
    """
    if format not in FORMATS:
        raise ValueError(f"--format must be one of {FORMATS}, got {format!r}")
    refuse_existing(output, overwrite, "pass overwrite=True (--overwrite) to replace it")
    if model is None:
        model = build_export_model(cfg)
    model.eval()
    wrapper = SemSegExportWrapper(model).eval()
    example = _sample(2, 64, 64)
    out_dir = os.path.dirname(os.path.abspath(output))
    os.makedirs(out_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_dir, suffix=f".{format}.partial")
    os.close(fd)
    try:
        if format == "onnx":
            export_onnx(wrapper, tmp, example, optimize=optimize)
            checks = check_export(wrapper, onnx_runner(tmp), sizes)
            exporter = f"torch.onnx.export(dynamo=True), torch {torch.__version__}"
        else:
            export_torchscript(wrapper, tmp, example)
            checks = check_export(wrapper, torchscript_runner(tmp), sizes)
            exporter = f"torch.jit.trace, torch {torch.__version__}"
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)

    # The run's own class names when its config.yaml recorded them, else the test dataset's.
    meta = model_metadata(cfg)
    num_classes = int(cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES)
    classes = list(meta.get("stuff_classes", []))
    colors = [list(map(int, c)) for c in meta.get("stuff_colors", [])]
    report = ExportReport(
        file=os.path.basename(output),
        format=format,
        exporter=exporter,
        inputs=[
            {
                "name": "image",
                "dtype": "float32",
                "shape": ["batch", 3, "height", "width"],
                "channel_order": cfg.INPUT.FORMAT,
                "value_range": [0, 255],
            }
        ],
        outputs=[
            {
                "name": "sem_seg",
                "dtype": "float32",
                "shape": ["batch", num_classes, "height", "width"],
                "meaning": "per-class logits at the input's size; argmax over axis 1 gives class ids",
            }
        ],
        preprocessing={
            "in_graph": [
                "normalise: (image - pixel_mean) / pixel_std",
                f"zero-pad bottom/right to a multiple of {wrapper.size_divisibility}, crop the logits back",
            ],
            "outside_graph": [
                "BGR->RGB when channel_order is RGB; HWC->CHW; float32",
                "inference.mode 'resize': resize the shorter side to min_size_test (longer side at "
                "most max_size_test), bilinearly resize the logits back to the original size "
                "(Detectron2's DefaultPredictor); 'whole' / 'slide': the image at inference.scale, "
                "whole or in tiles with blended logits (semseg_heads.modeling.sliding_window)",
            ],
            "pixel_mean": [float(v) for v in cfg.MODEL.PIXEL_MEAN],
            "pixel_std": [float(v) for v in cfg.MODEL.PIXEL_STD],
            "size_divisibility": wrapper.size_divisibility,
            "min_size_test": int(cfg.INPUT.MIN_SIZE_TEST),
            "max_size_test": int(cfg.INPUT.MAX_SIZE_TEST),
            # TEST.INFERENCE_MODE / TEST.SLIDING_WINDOW: ONNXPredictor tiles around the graph
            # (which runs one tile) as the eager model does (semseg_heads.modeling.sliding_window).
            "inference": InferenceSettings.from_config(cfg).to_json(),
        },
        classes=classes if len(classes) == num_classes else [str(i) for i in range(num_classes)],
        colors=colors if len(colors) == num_classes else [],
        config_file=config_file,
        weights=str(cfg.MODEL.WEIGHTS),
        torch_version=torch.__version__,
        checks=checks,
    )
    side = sidecar_path(output)
    with open(side + ".partial", "w") as f:
        json.dump(report.to_json(), f, indent=2)
    os.replace(side + ".partial", side)
    return report
