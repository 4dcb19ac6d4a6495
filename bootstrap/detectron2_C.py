"""Stand-in for ``detectron2._C`` on the detectron2 v0.6 archive path.

The PyPI archive ``pb1-detectron2==0.6`` ships Detectron2's Python code without its C++
sources, so the compiled module ``detectron2._C`` is missing and four v0.6 modules fail at
import. ``bootstrap/install_detectron2.py`` installs this file as ``detectron2/_C.py``; it is
the only file added to Detectron2. It must stay self-contained (it is imported as part of
``detectron2``, never of ``semseg_heads``).

Every attribute that v0.6 touches either works (the version queries that
``detectron2.utils.collect_env`` calls at ``default_setup``) or raises a ``RuntimeError``
naming the op, the feature that needs it and how to get the compiled build. Nothing in
semseg_heads calls these ops: the semantic models, Mask R-CNN (torchvision's ROIAlign and
NMS), the trainer and the evaluators run without them.
"""

from __future__ import annotations

from typing import Any, Callable, NoReturn

import torch

#: Lets ``semseg_heads.compat.detectron2_info`` tell this module from a compiled one.
SEMSEG_HEADS_STANDIN = True

_HOW_TO_GET_IT = (
    "This detectron2 is the v0.6 Python package installed by semseg_heads without compiled "
    "ops. Build the official detectron2 from source to get them: "
    "`.venv/bin/pip install --no-build-isolation "
    "'git+https://github.com/facebookresearch/detectron2.git'` "
    "(see README, 'GPU / official detectron2')."
)


class CompiledOpUnavailable(RuntimeError):
    """Raised when code calls a compiled Detectron2 op that this build does not have."""


def _unavailable(op: str, feature: str) -> Callable[..., NoReturn]:
    def op_stub(*args: Any, **kwargs: Any) -> NoReturn:
        raise CompiledOpUnavailable(
            f"detectron2._C.{op} is not available: {feature} needs Detectron2's compiled "
            f"C++/CUDA ops. {_HOW_TO_GET_IT}"
        )

    op_stub.__name__ = op
    op_stub.__qualname__ = op
    op_stub.__doc__ = f"Unavailable compiled op (needed for {feature})."
    return op_stub


_ROTATED = "rotated boxes (RRPN, rotated IoU, ROIAlignRotated)"
_DEFORM = "deformable convolution (DCN v1/v2)"
_FAST_COCO = (
    "fast COCO evaluation (COCOEvaluator(use_fast_impl=True); "
    "use_fast_impl=False uses pycocotools and works here)"
)

#: Every op of ``detectron2._C`` the v0.6 Python code references, with the feature needing it.
UNAVAILABLE_OPS: dict[str, str] = {
    "box_iou_rotated": _ROTATED,
    "roi_align_rotated_forward": _ROTATED,
    "roi_align_rotated_backward": _ROTATED,
    "nms_rotated": _ROTATED,
    "deform_conv_forward": _DEFORM,
    "deform_conv_backward_input": _DEFORM,
    "deform_conv_backward_filter": _DEFORM,
    "modulated_deform_conv_forward": _DEFORM,
    "modulated_deform_conv_backward": _DEFORM,
    "InstanceAnnotation": _FAST_COCO,
    "COCOevalEvaluateImages": _FAST_COCO,
    "COCOevalAccumulate": _FAST_COCO,
}

for _op, _feature in UNAVAILABLE_OPS.items():
    globals()[_op] = _unavailable(_op, _feature)


def get_compiler_version() -> str:
    """Answer ``collect_env`` (called by ``default_setup``): nothing was compiled."""
    return "not compiled (semseg_heads stand-in for detectron2._C)"


def get_cuda_version() -> str:
    """Answer ``collect_env``: this stand-in has no CUDA kernels."""
    return "not compiled"


def has_cuda() -> bool:
    return False


def _register_nms_rotated() -> None:
    # layers/nms.py calls torch.ops.detectron2.nms_rotated, which only the compiled module
    # registers; define it so that a call fails with our message, not "no such operator".
    try:
        lib = torch.library.Library("detectron2", "DEF")
    except RuntimeError:
        return  # a compiled build in this process already owns the namespace
    lib.define("nms_rotated(Tensor boxes, Tensor scores, float iou_threshold) -> Tensor")

    def nms_rotated_impl(boxes: torch.Tensor, scores: torch.Tensor, iou: float) -> NoReturn:
        globals()["nms_rotated"](boxes, scores, iou)
        raise AssertionError("unreachable")

    lib.impl("nms_rotated", nms_rotated_impl, "CompositeExplicitAutograd")
    globals()["_NMS_LIBRARY"] = lib  # the op lives as long as the library object


_register_nms_rotated()
