"""U-Net (Ronneberger, Fischer & Brox, MICCAI 2015): the expansive path and the meta-architecture.

Each up step (Sec. 2) doubles the resolution, either with a 2x2 up-convolution halving the
channels or, with ``MODEL.UNET.BILINEAR``, bilinear upsampling (the bottleneck is then halved
in the encoder instead), concatenates the encoder feature of that level, and applies two
3x3 convs; a 1x1 conv gives the class scores.
"""

from __future__ import annotations

import torch
from detectron2.config import CfgNode, configurable
from detectron2.layers import Conv2d, ShapeSpec
from detectron2.modeling import META_ARCH_REGISTRY, SEM_SEG_HEADS_REGISTRY
from torch import nn
from torch.nn import functional as F

from ..backbone.unet import DoubleConv
from ..segmentor import SemSegHead, SemSegSegmentor, loss_args_from_config


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


@SEM_SEG_HEADS_REGISTRY.register()
class UNetHead(SemSegHead):
    """The expansive path over features ``level0..levelD`` (strides 1..2**D) of ``UNetEncoder``."""

    @configurable
    def __init__(
        self,
        input_shape: dict[str, ShapeSpec],
        *,
        num_classes: int,
        bilinear: bool = False,
        norm: str = "BN",
        **loss_args,
    ):
        super().__init__(num_classes=num_classes, **loss_args)
        ordered = sorted(input_shape.items(), key=lambda kv: kv[1].stride)
        strides = [spec.stride for _, spec in ordered]
        if strides != [2**i for i in range(len(strides))] or len(strides) < 2:
            raise ValueError(
                f"UNetHead needs features at strides 1, 2, 4, ...; got {dict(zip(input_shape, strides))}"
            )
        self.in_features = [name for name, _ in ordered]
        channels = [spec.channels for _, spec in ordered]
        current = channels[-1]
        self.ups = nn.ModuleList()
        for level in reversed(range(len(channels) - 1)):
            skip = channels[level]
            out = skip // 2 if bilinear and level > 0 else skip
            self.ups.append(UpStep(current, skip, out, bilinear=bilinear, norm=norm))
            current = out
        self.predictor = Conv2d(current, num_classes, kernel_size=1)

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: dict[str, ShapeSpec]):
        return {
            "input_shape": input_shape,
            "bilinear": cfg.MODEL.UNET.BILINEAR,
            "norm": cfg.MODEL.UNET.NORM,
            **loss_args_from_config(cfg),
        }

    def layers(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        x = features[self.in_features[-1]]
        for name, up in zip(reversed(self.in_features[:-1]), self.ups):
            x = up(x, features[name])
        return self.predictor(x)


@META_ARCH_REGISTRY.register()
class UNet(SemSegSegmentor):
    """U-Net: ``build_unet_backbone`` (contracting path) + ``UNetHead`` (expansive path)."""

    head_name = "UNetHead"
