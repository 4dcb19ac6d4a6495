"""DeconvNet (Noh, Hong & Han, ICCV 2015): a mirrored deconvolution network over VGG16.

The decoder (Sec. 3.1, Fig. 2) mirrors the encoder: a 7x7 deconvolution turns fc7 back into
a pool5-sized 512-channel map, then for stages 5..1 max-unpooling puts every value back at
the position its encoder max-pool took it from (the recorded "switches", Sec. 3.2.1),
followed by 3x3 deconvolutions with BN and ReLU whose widths mirror the encoder's convs
(e.g. 512-512-256 after unpool4); a 1x1 conv scores the classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from detectron2.config import CfgNode, configurable
from detectron2.layers import Conv2d, ShapeSpec
from detectron2.modeling import META_ARCH_REGISTRY, SEM_SEG_HEADS_REGISTRY
from torch import nn
from torch.nn import functional as F

from ..backbone.vgg import VGG16_DEPTHS, check_vgg16_variant
from ..layers import conv_norm_relu
from ..segmentor import SemSegHead, SemSegSegmentor, loss_args_from_config

POOLS = ("pool1", "pool2", "pool3", "pool4", "pool5")


@SEM_SEG_HEADS_REGISTRY.register()
class DeconvNetHead(SemSegHead):
    """Unpooling with the encoder's switches + 3x3 deconvolutions + norm + ReLU, mirrored from VGG16.

    Needs ``fc7`` and ``pool1..pool5`` (their widths set the mirror) from a backbone that also
    returns ``pool{s}_switches`` (``build_vgg16_backbone`` with ``MODEL.VGG.VARIANT deconvnet``).
    """

    @configurable
    def __init__(
        self,
        input_shape: dict[str, ShapeSpec],
        *,
        num_classes: int,
        norm: str = "BN",
        convs_per_stage: Sequence[int] = VGG16_DEPTHS,
        **loss_args,
    ):
        super().__init__(num_classes=num_classes, **loss_args)
        missing = [f for f in ("fc7",) + POOLS if f not in input_shape]
        if missing:
            raise ValueError(
                f"DeconvNetHead needs backbone features {missing}: set MODEL.VGG.OUT_FEATURES to "
                "['pool1', 'pool2', 'pool3', 'pool4', 'pool5', 'fc7']"
            )
        widths = [input_shape[p].channels for p in POOLS]
        # fc6-deconv: 7x7, back to pool5's width (padded: the map keeps pool5's size).
        self.deconv_fc6 = conv_norm_relu(
            input_shape["fc7"].channels, widths[4], 7, norm=norm, transposed=True
        )
        self.stages = nn.ModuleList()
        for stage in reversed(range(5)):
            width = widths[stage]
            out = widths[stage - 1] if stage > 0 else width
            n = convs_per_stage[stage]
            layers = [conv_norm_relu(width, width, 3, norm=norm, transposed=True) for _ in range(n - 1)]
            layers.append(conv_norm_relu(width, out, 3, norm=norm, transposed=True))
            self.stages.append(nn.Sequential(*layers))
        self.predictor = Conv2d(widths[0], num_classes, kernel_size=1)

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: dict[str, ShapeSpec]):
        # Unpooling needs the encoder's max-pool switches, which only VGG16's "deconvnet" variant records.
        check_vgg16_variant(cfg, "DeconvNetHead", "deconvnet", vgg_only=True)
        return {"input_shape": input_shape, "norm": cfg.MODEL.DECONVNET.NORM, **loss_args_from_config(cfg)}

    def layers(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        x = self.deconv_fc6(features["fc7"])
        for pool, stage in zip(reversed(POOLS), self.stages):
            key = f"{pool}_switches"
            if key not in features:
                raise ValueError(f"DeconvNetHead: the backbone output has no {key!r} (max-pool switches)")
            x = F.max_unpool2d(x, features[key], kernel_size=2, stride=2)
            x = stage(x)
        return self.predictor(x)


@META_ARCH_REGISTRY.register()
class DeconvNet(SemSegSegmentor):
    """DeconvNet: ``build_vgg16_backbone`` (variant "deconvnet") + ``DeconvNetHead``."""

    head_name = "DeconvNetHead"
