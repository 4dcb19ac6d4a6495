"""Small building blocks shared by the architectures: width scaling, bilinear kernels, alignment."""

from __future__ import annotations

import math

import torch
from detectron2.layers import ShapeSpec
from torch import nn
from torch.nn import functional as F


def scaled_width(width: int, scale: float) -> int:
    """``width * MODEL.SEMSEG_HEADS.WIDTH_SCALE`` rounded, at least 1 (paper widths at 1.0)."""
    if not scale > 0:
        raise ValueError(f"MODEL.SEMSEG_HEADS.WIDTH_SCALE must be > 0, got {scale!r}")
    return max(1, int(round(width * scale)))


def bilinear_kernel(size: int) -> torch.Tensor:
    """The 2-D bilinear interpolation kernel (Caffe's "bilinear" filler used by FCN, Sec. 3.3).

    A transposed convolution with this kernel, stride ``f`` and size ``2f - f % 2`` is bilinear
    upsampling by ``f``.
    """
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    ramp = 1 - (torch.arange(size, dtype=torch.float32) - center).abs() / factor
    return ramp[:, None] * ramp[None, :]


def init_bilinear_(deconv: nn.ConvTranspose2d) -> None:
    """Initialise a (C -> C) transposed conv to per-channel bilinear upsampling (FCN, Sec. 3.3)."""
    if deconv.in_channels != deconv.out_channels or deconv.groups != 1:
        raise ValueError("bilinear initialisation needs a C -> C transposed conv with groups=1")
    kh, kw = deconv.kernel_size
    if kh != kw:
        raise ValueError(f"bilinear initialisation needs a square kernel, got {deconv.kernel_size}")
    with torch.no_grad():
        deconv.weight.zero_()
        kernel = bilinear_kernel(kh)
        for c in range(deconv.in_channels):
            deconv.weight[c, c] = kernel
        if deconv.bias is not None:
            deconv.bias.zero_()


class FixedBilinearUpsample(nn.Module):
    """Transposed conv fixed to bilinear upsampling by ``factor`` (FCN's final layer, Sec. 4.2).

    Caffe-style: kernel ``2 * factor``, no padding, so the output has ``(n + 1) * factor``
    cells for ``n`` input cells; callers crop (``FCNHead`` tracks where pixel 0 lands). The
    kernel is a non-persistent buffer: it is fixed, so it is neither trained nor saved.
    """

    def __init__(self, factor: int):
        super().__init__()
        self.factor = int(factor)
        self.register_buffer("kernel", bilinear_kernel(2 * self.factor)[None, None], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        weight = self.kernel.to(x.dtype).expand(channels, 1, -1, -1)
        return F.conv_transpose2d(x, weight, stride=self.factor, groups=channels)

    def extra_repr(self) -> str:
        return f"factor={self.factor}"


class Grid:
    """Where a feature map's cells sit in input pixels: cell ``i`` is centred at ``stride * i + offset``.

    Used to align FCN's score maps by cropping, as Caffe's Crop layer does for FCN (Sec. 4.2):
    the offsets follow from every layer's kernel, stride, padding and dilation.
    """

    def __init__(self, stride: float = 1.0, offset: float = 0.0):
        self.stride = float(stride)
        self.offset = float(offset)

    def conv(self, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> Grid:
        return Grid(self.stride * stride, self.offset + self.stride * (dilation * (kernel - 1) / 2 - padding))

    def deconv(self, kernel: int, stride: int, padding: int = 0) -> Grid:
        new_stride = self.stride / stride
        return Grid(new_stride, self.offset + new_stride * (padding - (kernel - 1) / 2))

    def as_tuple(self) -> tuple[float, float]:
        return (self.stride, self.offset)

    def __repr__(self) -> str:
        return f"Grid(stride={self.stride:g}, offset={self.offset:g})"


class GridShapeSpec(ShapeSpec):
    """A ``ShapeSpec`` that also carries the ``Grid`` of its feature map (``with_grid``)."""

    grid: Grid | None = None


def with_grid(spec: ShapeSpec, grid: Grid) -> GridShapeSpec:
    """A copy of ``spec`` that also says where its cells sit: how a backbone hands its geometry
    to heads.

    Detectron2 passes ``backbone.output_shape()`` to heads (``from_config(cfg, input_shape)``),
    in its own ``SemanticSegmentor`` too, so the geometry rides on the ``ShapeSpec`` objects.
    """
    # Built by keyword: ShapeSpec is a namedtuple in Detectron2 v0.6 and a dataclass later.
    out = GridShapeSpec(channels=spec.channels, height=spec.height, width=spec.width, stride=spec.stride)
    out.grid = grid
    return out


def grid_of(spec: ShapeSpec) -> Grid:
    """The grid a backbone attached to ``spec`` (``with_grid``); else the cell-centred grid of
    its stride, which Detectron2's backbones (ResNet, "same"-padded convs) follow."""
    grid = getattr(spec, "grid", None)
    return grid if grid is not None else Grid(spec.stride, cell_centre_offset(spec.stride))


def cell_centre_offset(stride: float) -> float:
    """Offset of a map whose cells cover ``stride x stride`` blocks from pixel 0 (Detectron2's
    assumption when it upsamples with ``align_corners=False``)."""
    return (stride - 1) / 2


def _integer_shift(delta: float, what: str) -> int:
    shift = round(delta)
    if not math.isclose(delta, shift, abs_tol=1e-6):
        raise ValueError(f"{what}: feature maps are misaligned by a fraction of a cell ({delta:g})")
    return int(shift)


def align_and_crop(
    a: torch.Tensor, grid_a: Grid, b: torch.Tensor, grid_b: Grid, what: str = "align"
) -> tuple[torch.Tensor, torch.Tensor, Grid]:
    """Crop two maps on the same stride to their common, aligned cells."""
    if grid_a.stride != grid_b.stride:
        raise ValueError(f"{what}: strides differ ({grid_a.stride:g} vs {grid_b.stride:g})")
    shift = _integer_shift((grid_a.offset - grid_b.offset) / grid_a.stride, what)
    if shift >= 0:
        b = b[..., shift:, shift:]
    else:
        a = a[..., -shift:, -shift:]
    h = min(a.shape[-2], b.shape[-2])
    w = min(a.shape[-1], b.shape[-1])
    if h <= 0 or w <= 0:
        raise ValueError(f"{what}: the maps do not overlap (shapes {tuple(a.shape)} and {tuple(b.shape)})")
    return a[..., :h, :w], b[..., :h, :w], Grid(grid_a.stride, max(grid_a.offset, grid_b.offset))


def crop_to_pixel_zero(x: torch.Tensor, grid: Grid, what: str = "crop") -> torch.Tensor:
    """Crop a stride-1 map so that its first cell is input pixel 0."""
    if grid.stride != 1:
        raise ValueError(f"{what}: expected a stride-1 map, got {grid}")
    start = _integer_shift(-grid.offset, what)
    if start < 0:
        raise ValueError(f"{what}: the map starts {-start} pixels inside the image ({grid})")
    return x[..., start:, start:]


def crop_logits_to(logits: torch.Tensor, size: tuple[int, int], what: str = "logits") -> torch.Tensor:
    """Crop logits that cover the (padded) input from pixel 0 to ``size``; error if they fall short."""
    h, w = int(size[0]), int(size[1])
    if logits.shape[-2] < h or logits.shape[-1] < w:
        raise ValueError(
            f"{what} of shape {tuple(logits.shape[-2:])} do not cover the target of shape {(h, w)}"
        )
    return logits[..., :h, :w]


class ConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` with optional ``norm`` and ``activation``, like Detectron2's ``Conv2d``."""

    def __init__(self, *args, norm: nn.Module | None = None, activation=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.norm = norm
        self.activation = activation

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        x = super().forward(x, output_size)
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x


def conv_norm_relu(
    in_channels: int,
    out_channels: int,
    kernel_size: int = 3,
    *,
    norm: str | None = "",
    padding: int | None = None,
    dilation: int = 1,
    transposed: bool = False,
) -> nn.Module:
    """A stride-1 conv (or "deconvolution") -> ``get_norm(norm)`` -> ReLU, He-initialised.

    The conv has a bias only without a norm (a norm's shift makes it redundant), as Detectron2 does.
    """
    from detectron2.layers import Conv2d, get_norm

    if padding is None:
        padding = dilation * (kernel_size - 1) // 2
    norm_layer = get_norm(norm, out_channels)
    conv_cls = ConvTranspose2d if transposed else Conv2d
    conv = conv_cls(
        in_channels,
        out_channels,
        kernel_size,
        padding=padding,
        dilation=dilation,
        bias=norm_layer is None,
        norm=norm_layer,
        activation=F.relu,
    )
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv
