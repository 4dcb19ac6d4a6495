"""VGG16 (Simonyan & Zisserman 2015), "convolutionalised" as FCN, DeconvNet and the dilated front-end need.

One network, three paper variants (``MODEL.VGG.VARIANT``):

- ``"fcn"`` (Long et al. 2015, Sec. 3.1): fc6 a 7x7 conv with 4096 channels, fc7 a 1x1 conv,
  dropout after each. ``MODEL.VGG.PAD_INPUT`` = p > 0 pads conv1_1 by p (the paper: 100) with
  an unpadded fc6 and ceil-mode pooling, so any input size works without resizing;
  p = 0 uses "same" padding everywhere (fc6 padded by 3) and inputs padded to a multiple of 32.
- ``"deconvnet"`` (Noh et al. 2015, Sec. 3.1): the same layers, usually with BN, and every
  max-pool records its switches (argmax indices) for the decoder's unpooling; fc6 is padded by 3
  so any input (padded to a multiple of 32) works, where the paper's 224x224 crops made it 7x7 valid.
- ``"dilated"`` (Yu & Koltun 2016, Sec. 4): pool4 and pool5 removed, conv5 dilated by 2, fc6 by 4,
  output stride 8.

Feature names: ``conv{s}`` (last conv of stage s, before pooling), ``pool{s}``, ``fc6``, ``fc7``;
layer names follow the Caffe models (``conv1_1`` ... ``conv5_3``, ``fc6``, ``fc7``).
"""

from __future__ import annotations

from collections.abc import Sequence

import fvcore.nn.weight_init as weight_init
import torch
from detectron2.config import CfgNode
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from torch.nn import functional as F

from ..layers import Grid, scaled_width, with_grid

VGG16_WIDTHS = (64, 128, 256, 512, 512)
VGG16_DEPTHS = (2, 2, 3, 3, 3)  # convs per stage
VGG16_FC_WIDTH = 4096
VARIANTS = ("fcn", "deconvnet", "dilated")


def vgg16_plan(pad_input: int = 0, dilated: bool = False) -> list[tuple[str, str, dict[str, int]]]:
    """The layer sequence as ``(kind, name, conv arguments)``; kind is conv, pool or feature."""
    if pad_input < 0:
        raise ValueError(f"MODEL.VGG.PAD_INPUT must be >= 0, got {pad_input}")
    plan: list[tuple[str, str, dict[str, int]]] = []
    for stage, depth in enumerate(VGG16_DEPTHS, start=1):
        dilation = 2 if dilated and stage == 5 else 1
        for i in range(1, depth + 1):
            padding = pad_input if pad_input > 0 and stage == 1 and i == 1 else dilation
            plan.append(("conv", f"conv{stage}_{i}", {"kernel": 3, "padding": padding, "dilation": dilation}))
        plan.append(("feature", f"conv{stage}", {}))
        if not (dilated and stage >= 4):
            plan.append(("pool", f"pool{stage}", {}))
            plan.append(("feature", f"pool{stage}", {}))
    fc_dilation = 4 if dilated else 1
    fc6_padding = 0 if pad_input > 0 else 3 * fc_dilation
    plan.append(("conv", "fc6", {"kernel": 7, "padding": fc6_padding, "dilation": fc_dilation}))
    plan.append(("feature", "fc6", {}))
    plan.append(("conv", "fc7", {"kernel": 1, "padding": 0, "dilation": 1}))
    plan.append(("feature", "fc7", {}))
    return plan


def vgg16_feature_grids(pad_input: int = 0, dilated: bool = False) -> dict[str, Grid]:
    """Stride and offset (in input pixels) of every feature, for aligning maps by cropping."""
    grid, grids = Grid(), {}
    for kind, name, args in vgg16_plan(pad_input, dilated):
        if kind == "conv":
            grid = grid.conv(args["kernel"], 1, args["padding"], args["dilation"])
        elif kind == "pool":
            grid = grid.conv(2, 2, 0)
        else:
            grids[name] = grid
    return grids


def vgg16_output_shape(
    *,
    widths: Sequence[int] = VGG16_WIDTHS,
    fc_width: int = VGG16_FC_WIDTH,
    pad_input: int = 0,
    dilated: bool = False,
    record_switches: bool = False,
    out_features: Sequence[str] = ("fc7",),
) -> dict[str, ShapeSpec]:
    """``VGG16(**same arguments).output_shape()`` without building the network.

    For LazyConfig files, where a head's ``input_shape`` is written next to the backbone's
    arguments (``configs/common/models/``); the ShapeSpecs carry the grids and the variant
    as the built backbone's do.
    """
    plan = vgg16_plan(pad_input, dilated)
    grids = vgg16_feature_grids(pad_input, dilated)
    names = [name for kind, name, _ in plan if kind == "feature"]
    unknown = [f for f in out_features if f not in names]
    if unknown or not out_features:
        raise ValueError(f"VGG16 out_features {list(out_features)}: this variant has features {names}")
    variant = "dilated" if dilated else "deconvnet" if record_switches else "fcn"
    shapes = {}
    for name in out_features:
        channels = fc_width if name.startswith("fc") else widths[int(name[4]) - 1]
        spec = with_grid(ShapeSpec(channels=channels, stride=int(grids[name].stride)), grids[name])
        spec.vgg_variant = variant
        shapes[name] = spec
    return shapes


class VGG16(Backbone):
    """VGG16's 13 conv layers plus fc6/fc7 as convolutions; see the module docstring for variants.

    Layers beyond the deepest of ``out_features`` are not built (no unused parameters). With
    ``record_switches`` the output also holds ``pool{s}_switches``: the indices of
    ``F.max_pool2d(..., return_indices=True)`` for ``F.max_unpool2d``.
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        widths: Sequence[int] = VGG16_WIDTHS,
        fc_width: int = VGG16_FC_WIDTH,
        norm: str = "",
        pad_input: int = 0,
        dilated: bool = False,
        record_switches: bool = False,
        fc_dropout: float = 0.5,
        out_features: Sequence[str] = ("fc7",),
    ):
        super().__init__()
        if len(widths) != 5:
            raise ValueError(f"VGG16 has 5 stages; got widths {tuple(widths)}")
        if not 0 <= fc_dropout < 1:
            raise ValueError(f"MODEL.VGG.FC_DROPOUT must be in [0, 1), got {fc_dropout}")
        plan = vgg16_plan(pad_input, dilated)
        names = [name for kind, name, _ in plan if kind == "feature"]
        out_features = list(out_features)
        unknown = [f for f in out_features if f not in names]
        if unknown or not out_features:
            raise ValueError(f"MODEL.VGG.OUT_FEATURES {out_features}: this variant has features {names}")
        last = max(i for i, (kind, name, _) in enumerate(plan) if kind == "feature" and name in out_features)
        self._plan = plan[: last + 1]
        self._out_features = out_features
        self._pad_input = pad_input
        self._dilated = dilated
        self._ceil_mode = pad_input > 0  # Caffe pools with ceil; needed when sizes are not multiples of 2
        self._record_switches = record_switches
        self._fc_dropout = fc_dropout

        grids = vgg16_feature_grids(pad_input, dilated)
        channels = in_channels
        self._out_feature_channels: dict[str, int] = {}
        self._out_feature_strides: dict[str, int] = {}
        for kind, name, args in self._plan:
            if kind == "conv":
                out = fc_width if name.startswith("fc") else widths[int(name[4]) - 1]
                conv = Conv2d(
                    channels,
                    out,
                    kernel_size=args["kernel"],
                    padding=args["padding"],
                    dilation=args["dilation"],
                    bias=not norm,
                    norm=get_norm(norm, out),
                    activation=F.relu,
                )
                weight_init.c2_msra_fill(conv)
                self.add_module(name, conv)
                channels = out
            elif kind == "feature":
                self._out_feature_channels[name] = channels
                self._out_feature_strides[name] = int(grids[name].stride)
        self._grids = {name: grids[name] for name in self._out_features}

    @property
    def size_divisibility(self) -> int:
        if self._pad_input > 0:
            return 1  # padded conv1_1 + ceil-mode pooling: any size
        return 8 if self._dilated else 32

    def feature_grids(self) -> dict[str, Grid]:
        """Where each output feature's cells sit in input pixels (FCN aligns its skips by them)."""
        return dict(self._grids)

    @property
    def variant(self) -> str:
        """The paper variant this network is: "dilated", "deconvnet" (records switches) or "fcn"."""
        return "dilated" if self._dilated else "deconvnet" if self._record_switches else "fcn"

    def output_shape(self) -> dict[str, ShapeSpec]:
        # Each ShapeSpec carries its grid and the variant: heads read them (FCNHead aligns by the
        # grids), whichever meta-architecture builds them, and never read the backbone's keys.
        grids = self.feature_grids()
        shapes = {name: with_grid(spec, grids[name]) for name, spec in super().output_shape().items()}
        for spec in shapes.values():
            spec.vgg_variant = self.variant
        return shapes

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs: dict[str, torch.Tensor] = {}
        for kind, name, _ in self._plan:
            if kind == "conv":
                x = getattr(self, name)(x)
                if name.startswith("fc") and self._fc_dropout > 0:
                    x = F.dropout(x, self._fc_dropout, self.training)
            elif kind == "pool":
                if self._record_switches:
                    x, switches = F.max_pool2d(x, 2, 2, ceil_mode=self._ceil_mode, return_indices=True)
                    outputs[f"{name}_switches"] = switches
                else:
                    x = F.max_pool2d(x, 2, 2, ceil_mode=self._ceil_mode)
            elif name in self._out_features:
                outputs[name] = x
        return outputs


def _check_variant(variant: str) -> str:
    if variant not in VARIANTS:
        raise ValueError(f"MODEL.VGG.VARIANT must be one of {VARIANTS}, got {variant!r}")
    return variant


def check_vgg16_variant(
    input_shape: dict[str, ShapeSpec], who: str, variant: str, vgg_only: bool = False
) -> None:
    """For a head's ``from_config``: raise unless a VGG16 backbone (known by the ``vgg_variant``
    its ``output_shape()`` puts on each ShapeSpec) is of ``variant``; with ``vgg_only``, also
    unless the backbone is VGG16 at all (DeconvNet unpools with VGG16's max-pool switches)."""
    found = next((getattr(s, "vgg_variant", None) for s in input_shape.values()), None)
    if (vgg_only and found is None) or (found is not None and found != variant):
        backbone = " with MODEL.BACKBONE.NAME 'build_vgg16_backbone'" if vgg_only else ""
        got = f"VGG16 variant {found!r}" if found else "a backbone other than VGG16"
        raise ValueError(f"{who} needs MODEL.VGG.VARIANT {variant!r}{backbone}; got {got}")


@BACKBONE_REGISTRY.register()
def build_vgg16_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> VGG16:
    """``MODEL.BACKBONE.NAME: build_vgg16_backbone``; widths scaled by ``MODEL.SEMSEG_HEADS.WIDTH_SCALE``."""
    variant = _check_variant(cfg.MODEL.VGG.VARIANT)
    scale = cfg.MODEL.SEMSEG_HEADS.WIDTH_SCALE
    return VGG16(
        in_channels=input_shape.channels,
        widths=[scaled_width(w, scale) for w in VGG16_WIDTHS],
        fc_width=scaled_width(VGG16_FC_WIDTH, scale),
        norm=cfg.MODEL.VGG.NORM,
        pad_input=cfg.MODEL.VGG.PAD_INPUT if variant == "fcn" else 0,
        dilated=variant == "dilated",
        record_switches=variant == "deconvnet",
        fc_dropout=cfg.MODEL.VGG.FC_DROPOUT,
        out_features=cfg.MODEL.VGG.OUT_FEATURES,
    )
