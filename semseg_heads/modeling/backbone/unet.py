"""The U-Net paths (Ronneberger et al. 2015, Sec. 2): the contracting path as a Detectron2
backbone, and the up steps of the expansive path (used by ``UNetHead`` and ``UNetPyramid``).

Each level is two 3x3 conv + norm + ReLU; levels after the first start with a 2x2 max pool,
doubling the width (64-128-256-512-1024 for depth 4). Convs are padded so the output size
equals the input size (the widely used PyTorch variant; the paper's unpadded convs needed
overlap-tile inputs). With bilinear upsampling in the decoder the bottleneck is halved
(1024 -> 512), as in that variant. Features ``level{i}`` have stride ``2**i``. ``dropout``
(``MODEL.UNET.DROPOUT``) is Sec. 3.1's "drop-out layers at the end of the contracting path";
the paper does not give the rate and the PyTorch variant has none, so it is off by default.
"""

from __future__ import annotations

import torch
from detectron2.config import CfgNode
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from torch import nn
from torch.nn import functional as F

from ..layers import conv_norm_relu, scaled_width


class DoubleConv(nn.Sequential):
    """Two 3x3 conv + norm + ReLU: the unit of both U-Net paths."""

    def __init__(
        self, in_channels: int, out_channels: int, mid_channels: int | None = None, norm: str = "BN"
    ):
        mid_channels = mid_channels or out_channels
        super().__init__(
            conv_norm_relu(in_channels, mid_channels, 3, norm=norm),
            conv_norm_relu(mid_channels, out_channels, 3, norm=norm),
        )


class UpStep(nn.Module):
    """Upsample 2x, concatenate the skip feature, two 3x3 convs."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, *, bilinear: bool, norm: str):
        super().__init__()
        self.bilinear = bilinear
        if bilinear:
            self.up = None
            merged = in_channels + skip_channels
            self.conv = DoubleConv(merged, out_channels, mid_channels=merged // 2, norm=norm)
        else:
            self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2)
            self.conv = DoubleConv(in_channels // 2 + skip_channels, out_channels, norm=norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if self.bilinear:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        else:
            x = self.up(x)
        return self.conv(torch.cat([skip, x], dim=1))


def build_up_steps(channels: list[int], *, bilinear: bool, norm: str) -> tuple[nn.ModuleList, list[int]]:
    """The expansive path (Sec. 2) over encoder levels of ``channels`` (strides 1, 2, 4, ...).

    Returns the up steps, deepest first, and the channels of the path's output at each level
    (stride 1 first; the last entry is the bottleneck's own).
    """
    current = channels[-1]
    ups = nn.ModuleList()
    outputs = [current]
    for level in reversed(range(len(channels) - 1)):
        skip = channels[level]
        out = skip // 2 if bilinear and level > 0 else skip
        ups.append(UpStep(current, skip, out, bilinear=bilinear, norm=norm))
        outputs.insert(0, out)
        current = out
    return ups, outputs


def expand(ups: nn.ModuleList, levels: list[torch.Tensor]) -> list[torch.Tensor]:
    """Run the expansive path ``ups`` over encoder outputs ``levels`` (stride 1 first).

    Returns its output at each level, stride 1 first; the last entry is the bottleneck.
    """
    x = levels[-1]
    outputs = [x]
    for skip, up in zip(reversed(levels[:-1]), ups):
        x = up(x, skip)
        outputs.insert(0, x)
    return outputs


def unet_widths(base_width: int, depth: int, bilinear: bool) -> list:
    """Channels of levels 0..depth: ``base * 2**i``; the bottleneck halved with bilinear upsampling."""
    widths = [base_width * 2**i for i in range(depth + 1)]
    if bilinear:
        widths[-1] //= 2
    return widths


def unet_output_shape(
    *, base_width: int = 64, depth: int = 4, bilinear: bool = False
) -> dict[str, ShapeSpec]:
    """``UNetEncoder(**same arguments).output_shape()`` without building it (for LazyConfig files)."""
    widths = unet_widths(base_width, depth, bilinear)
    return {f"level{i}": ShapeSpec(channels=w, stride=2**i) for i, w in enumerate(widths)}


class UNetEncoder(Backbone):
    """Levels 0..depth of the contracting path; outputs every level (the decoder needs them all)."""

    def __init__(
        self,
        *,
        in_channels: int = 3,
        base_width: int = 64,
        depth: int = 4,
        bilinear: bool = False,
        norm: str = "BN",
        dropout: float = 0.0,
    ):
        super().__init__()
        if depth < 1:
            raise ValueError(f"MODEL.UNET.DEPTH must be >= 1, got {depth}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MODEL.UNET.DROPOUT must be in [0, 1), got {dropout!r}")
        self.depth = depth
        self.bilinear, self.norm = bilinear, norm  # the expansive path over it must match
        widths = unet_widths(base_width, depth, bilinear)
        self._out_features = [f"level{i}" for i in range(depth + 1)]
        self._out_feature_channels = dict(zip(self._out_features, widths))
        self._out_feature_strides = {f"level{i}": 2**i for i in range(depth + 1)}
        channels = in_channels
        for name, width in zip(self._out_features, widths):
            self.add_module(name, DoubleConv(channels, width, norm=norm))
            channels = width
        # Element-wise, as Caffe's dropout layer; on the bottleneck, the path's last output.
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None

    @property
    def size_divisibility(self) -> int:
        return 2**self.depth

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs = {}
        for i, name in enumerate(self._out_features):
            if i > 0:
                x = F.max_pool2d(x, 2)
            x = getattr(self, name)(x)
            outputs[name] = x
        if self.dropout is not None:
            outputs[self._out_features[-1]] = self.dropout(x)
        return outputs


@BACKBONE_REGISTRY.register()
def build_unet_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> UNetEncoder:
    """``MODEL.BACKBONE.NAME: build_unet_backbone``; width ``MODEL.UNET.BASE_WIDTH * WIDTH_SCALE``."""
    return UNetEncoder(
        in_channels=input_shape.channels,
        base_width=scaled_width(cfg.MODEL.UNET.BASE_WIDTH, cfg.MODEL.SEMSEG_HEADS.WIDTH_SCALE),
        depth=cfg.MODEL.UNET.DEPTH,
        bilinear=cfg.MODEL.UNET.BILINEAR,
        norm=cfg.MODEL.UNET.NORM,
        dropout=cfg.MODEL.UNET.DROPOUT,
    )
