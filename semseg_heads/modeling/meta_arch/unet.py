"""U-Net (Ronneberger, Fischer & Brox, MICCAI 2015): the expansive path as a head, and the
meta-architecture (the up steps themselves are in ``backbone/unet.py``).

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

from ..backbone.unet import build_up_steps, expand
from ..segmentor import SemSegHead, SemSegSegmentor, loss_args_from_config


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
        self.ups, out_channels = build_up_steps(
            [spec.channels for _, spec in ordered], bilinear=bilinear, norm=norm
        )
        self.predictor = Conv2d(out_channels[0], num_classes, kernel_size=1)

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: dict[str, ShapeSpec]):
        return {
            "input_shape": input_shape,
            "bilinear": cfg.MODEL.UNET.BILINEAR,
            "norm": cfg.MODEL.UNET.NORM,
            **loss_args_from_config(cfg),
        }

    def layers(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.predictor(expand(self.ups, [features[f] for f in self.in_features])[0])


@META_ARCH_REGISTRY.register()
class UNet(SemSegSegmentor):
    """U-Net: ``build_unet_backbone`` (contracting path) + ``UNetHead`` (expansive path)."""

    head_name = "UNetHead"
