"""Multi-scale context aggregation by dilated convolutions (Yu & Koltun, ICLR 2016).

The front-end (Sec. 4) is VGG16 without pool4/pool5 and with dilated conv5/fc6
(``build_vgg16_backbone``, variant "dilated"), plus a 1x1 layer scoring the C classes at
output stride 8. The context module (Sec. 3, Table 1) takes those C maps through seven 3x3
convs with dilations 1, 1, 2, 4, 8, 16, 1, each followed by ReLU, and a final 1x1 conv:
"basic" keeps C channels, "large" widens to 2C, 2C, 4C, 8C, 16C, 32C, 32C. It is initialised
to the identity (random initialisation trained poorly in the paper). The output is upsampled
8x bilinearly. ``MODEL.DILATED.CONTEXT "none"`` trains the front-end alone.

The paper trains in stages (Sec. 5): the front-end first, then the context module on the
front-end's output, the front-end fixed. ``MODEL.DILATED.FREEZE_FRONTEND`` gives that second
stage: start a context network from a trained front-end (``MODEL.WEIGHTS``) and only the
module learns.
"""

from __future__ import annotations

from typing import Any

import torch
from detectron2.config import CfgNode, configurable
from detectron2.layers import Conv2d, FrozenBatchNorm2d, ShapeSpec
from detectron2.modeling import META_ARCH_REGISTRY, SEM_SEG_HEADS_REGISTRY
from torch import nn
from torch.nn import functional as F

from ..backbone.vgg import check_vgg16_variant
from ..layers import conv_norm_relu
from ..segmentor import SemSegHead, SemSegSegmentor, loss_args_from_config

CONTEXT_DILATIONS = (1, 1, 2, 4, 8, 16, 1)
CONTEXT_WIDTHS = {"basic": (1, 1, 1, 1, 1, 1, 1), "large": (2, 2, 4, 8, 16, 32, 32)}  # multiples of C
CONTEXTS = ("none", "basic", "large")


def identity_init_(conv: nn.Conv2d, num_classes: int, noise_std: float = 0.0) -> None:
    """Sec. 3's initialisation: the layer passes class maps through unchanged.

    ``k(t, a)[b] = C / c_out`` at the kernel centre t = 0 when input channel a and output
    channel b belong to the same class group (``floor(a C / c_in) == floor(b C / c_out)``),
    otherwise 0 plus Gaussian noise ``noise_std * C / c_out`` (the paper's epsilon for the
    large module, whose widths differ between layers). With c_in == c_out == C it is exactly
    the identity; across the large module the scales telescope back to the identity.
    """
    c_out, c_in, kh, kw = conv.weight.shape
    scale = num_classes / c_out
    with torch.no_grad():
        weight = torch.zeros_like(conv.weight)
        if noise_std > 0:
            weight.normal_(0.0, noise_std * scale)
        group_in = torch.arange(c_in) * num_classes // c_in
        group_out = torch.arange(c_out) * num_classes // c_out
        same = (group_out[:, None] == group_in[None, :]).to(weight.dtype)
        weight[:, :, kh // 2, kw // 2] += scale * same
        conv.weight.copy_(weight)
        if conv.bias is not None:
            conv.bias.zero_()


class ContextModule(nn.Module):
    """Seven dilated 3x3 conv + ReLU layers and a final 1x1 conv on C class maps (Table 1)."""

    def __init__(self, num_classes: int, kind: str = "basic", norm: str = "", noise_std: float | None = None):
        super().__init__()
        if kind not in CONTEXT_WIDTHS:
            raise ValueError(f"context module kind must be one of {tuple(CONTEXT_WIDTHS)}, got {kind!r}")
        if noise_std is None:
            noise_std = 0.0 if kind == "basic" else 1e-3
        self.kind = kind
        widths = [m * num_classes for m in CONTEXT_WIDTHS[kind]]
        layers = []
        channels = num_classes
        for width, dilation in zip(widths, CONTEXT_DILATIONS):
            layer = conv_norm_relu(channels, width, 3, norm=norm, dilation=dilation)
            identity_init_(layer, num_classes, noise_std)
            layers.append(layer)
            channels = width
        self.layers = nn.Sequential(*layers)
        self.final = Conv2d(channels, num_classes, kernel_size=1)  # no ReLU: it outputs scores
        identity_init_(self.final, num_classes, noise_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final(self.layers(x))


@SEM_SEG_HEADS_REGISTRY.register()
class DilatedContextHead(SemSegHead):
    """Front-end score layer, optional context module, bilinear upsampling to the input resolution."""

    @configurable
    def __init__(
        self,
        input_shape: dict[str, ShapeSpec],
        *,
        num_classes: int,
        context: str = "basic",
        norm: str = "",
        **loss_args,
    ):
        super().__init__(num_classes=num_classes, **loss_args)
        if len(input_shape) != 1:
            raise ValueError(f"DilatedContextHead takes one feature (fc7); got {sorted(input_shape)}")
        if context not in CONTEXTS:
            raise ValueError(f"MODEL.DILATED.CONTEXT must be one of {CONTEXTS}, got {context!r}")
        ((self.in_feature, spec),) = input_shape.items()
        self.stride = spec.stride
        self.predictor = Conv2d(spec.channels, num_classes, kernel_size=1)
        nn.init.normal_(self.predictor.weight, std=0.01)  # not zero: the context ReLUs would block gradients
        nn.init.zeros_(self.predictor.bias)
        self.context = ContextModule(num_classes, context, norm) if context != "none" else None

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: dict[str, ShapeSpec]):
        check_vgg16_variant(input_shape, "DilatedContextHead", "dilated")
        names = list(cfg.MODEL.SEM_SEG_HEAD.IN_FEATURES)
        if len(names) != 1 or names[0] not in input_shape:
            raise ValueError(
                f"DilatedContextHead: MODEL.SEM_SEG_HEAD.IN_FEATURES must name one backbone output of "
                f"{sorted(input_shape)}, got {names}"
            )
        return {
            "input_shape": {names[0]: input_shape[names[0]]},
            "context": cfg.MODEL.DILATED.CONTEXT,
            "norm": cfg.MODEL.DILATED.NORM,
            **loss_args_from_config(cfg),
        }

    def layers(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        x = self.predictor(features[self.in_feature])
        if self.context is not None:
            x = self.context(x)
        return F.interpolate(x, scale_factor=self.stride, mode="bilinear", align_corners=False)


@META_ARCH_REGISTRY.register()
class DilatedContextNet(SemSegSegmentor):
    """Dilated front-end (``build_vgg16_backbone``, variant "dilated") + ``DilatedContextHead``.

    ``freeze_frontend=True`` fixes the front-end (backbone and score layer: no gradients, BN on
    its running statistics) so that only the context module trains, Sec. 5's second stage.
    """

    head_name = "DilatedContextHead"

    @configurable
    def __init__(self, *, freeze_frontend: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if freeze_frontend:
            if self.sem_seg_head.context is None:
                raise ValueError(
                    "MODEL.DILATED.FREEZE_FRONTEND trains the context module alone, but "
                    "MODEL.DILATED.CONTEXT is 'none'; set it to 'basic' or 'large'"
                )
            for part in (self.backbone, self.sem_seg_head.predictor):
                part.requires_grad_(False)
            # Detectron2's FrozenBatchNorm2d keeps the front-end's statistics in train mode too.
            self.backbone = FrozenBatchNorm2d.convert_frozen_batchnorm(self.backbone)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict[str, Any]:
        return {**super().from_config(cfg), "freeze_frontend": cfg.MODEL.DILATED.FREEZE_FRONTEND}
