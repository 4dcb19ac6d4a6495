"""FCN: fully convolutional networks (Long, Shelhamer & Darrell, CVPR 2015).

``FCNHead`` scores the coarsest feature with a 1x1 conv and, for FCN-16s/8s, fuses finer
skip scores (pool4, pool3) after 2x upsampling with transposed convs initialised to bilinear
and learned (Sec. 4.2); a final transposed conv fixed to bilinear upsamples to the input.
``MODEL.FCN.OUTPUT_STRIDE`` picks the variant: of the features in
``MODEL.SEM_SEG_HEAD.IN_FEATURES``, those with stride >= it are fused (32: fc7 only).

Alignment follows Caffe's Crop layers: each map knows where its cells sit in input pixels
(``Grid``), so the same code serves the paper's pad-100 VGG16 (crop offsets 5, 9, 19, 27, 31
come out of the layer geometry) and "same"-padded backbones (VGG16 with ``MODEL.VGG.PAD_INPUT 0``, or
Detectron2's ResNet, whose maps are assumed cell-centred).

With ``MODEL.FCN.CONV_DIMS > 0`` a 3x3 conv + norm + ReLU + dropout precedes each score
layer: torchvision's FCN-ResNet head (CONV_DIMS 512, BN, dropout 0.1), the Chair Segments
FCN-ResNet50/101 baselines.
"""

from __future__ import annotations

import logging

import fvcore.nn.weight_init as weight_init
import torch
from detectron2.config import CfgNode, configurable
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.modeling import META_ARCH_REGISTRY, SEM_SEG_HEADS_REGISTRY
from torch import nn
from torch.nn import functional as F

from ..backbone.vgg import check_vgg16_variant
from ..layers import (
    FixedBilinearUpsample,
    Grid,
    align_and_crop,
    crop_to_pixel_zero,
    grid_of,
    init_bilinear_,
    scaled_width,
)
from ..segmentor import SemSegHead, SemSegSegmentor, loss_args_from_config

logger = logging.getLogger(__name__)


@SEM_SEG_HEADS_REGISTRY.register()
class FCNHead(SemSegHead):
    """Score layers, learnable 2x upsampling + skip fusion, fixed bilinear upsampling to stride 1."""

    @configurable
    def __init__(
        self,
        input_shape: dict[str, ShapeSpec],
        *,
        num_classes: int,
        feature_grids: dict[str, Grid] | None = None,
        conv_dims: int = 0,
        norm: str = "BN",
        dropout: float = 0.1,
        **loss_args,
    ):
        """
        Args:
            input_shape: the features to fuse; their strides must halve from one to the next
                (e.g. fc7 at 32, pool4 at 16, pool3 at 8).
            feature_grids: where each feature's cells sit in input pixels; default: cell-centred.
            conv_dims: channels of an optional 3x3 conv block before each score layer (0: none).
            norm, dropout: that block's norm (``get_norm``) and dropout.
            loss_args: ``SemSegLoss`` arguments (ignore_value, loss_type, class_weights, loss_weight).
        """
        super().__init__(num_classes=num_classes, **loss_args)
        if not input_shape:
            raise ValueError("FCNHead needs at least one input feature")
        ordered = sorted(input_shape.items(), key=lambda kv: -kv[1].stride)
        self.in_features = [name for name, _ in ordered]
        strides = [spec.stride for _, spec in ordered]
        for coarse, fine, name in zip(strides, strides[1:], self.in_features[1:]):
            if coarse != 2 * fine:
                raise ValueError(
                    f"FCNHead fuses features at halving strides; {name} has stride {fine} after {coarse}"
                )
        feature_grids = feature_grids or {}
        self.grids = {
            name: feature_grids[name] if name in feature_grids else grid_of(spec) for name, spec in ordered
        }
        for name, spec in ordered:
            if self.grids[name].stride != spec.stride:
                raise ValueError(
                    f"FCNHead: grid of {name} has stride {self.grids[name].stride}, shape says {spec.stride}"
                )

        self.scores = nn.ModuleDict()
        for name, spec in ordered:
            layers = []
            channels = spec.channels
            if conv_dims > 0:
                conv = Conv2d(
                    channels,
                    conv_dims,
                    3,
                    padding=1,
                    bias=not norm,
                    norm=get_norm(norm, conv_dims),
                    activation=F.relu,
                )
                weight_init.c2_msra_fill(conv)
                layers += [conv, nn.Dropout(dropout)]
                channels = conv_dims
            score = Conv2d(channels, num_classes, 1)
            # Sec. 4.1: "We initialize the class scoring convolution layer to zero".
            nn.init.zeros_(score.weight)
            nn.init.zeros_(score.bias)
            layers.append(score)
            self.scores[name] = nn.Sequential(*layers)
        # One learnable 2x upsampling per fused skip; no upsampling layer without a skip to feed.
        self.upscores = nn.ModuleList()
        for _ in self.in_features[1:]:
            up = nn.ConvTranspose2d(num_classes, num_classes, 4, stride=2, bias=False)
            init_bilinear_(up)
            self.upscores.append(up)
        self.output_stride = strides[-1]
        self.final_upsample = FixedBilinearUpsample(self.output_stride)

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: dict[str, ShapeSpec]):
        output_stride = cfg.MODEL.FCN.OUTPUT_STRIDE
        available = list(cfg.MODEL.SEM_SEG_HEAD.IN_FEATURES)
        missing = [f for f in available if f not in input_shape]
        if missing:
            raise ValueError(
                f"MODEL.SEM_SEG_HEAD.IN_FEATURES {missing} are not backbone outputs {sorted(input_shape)}"
            )
        used = {f: input_shape[f] for f in available if input_shape[f].stride >= output_stride}
        if not used or min(s.stride for s in used.values()) != output_stride:
            raise ValueError(
                f"MODEL.FCN.OUTPUT_STRIDE {output_stride} needs a feature of that stride in "
                "MODEL.SEM_SEG_HEAD.IN_FEATURES; strides there: "
                f"{ {f: input_shape[f].stride for f in available} }"
            )
        skipped = [f for f in available if f not in used]
        if skipped:
            logger.info(
                f"FCN-{output_stride}s fuses {list(used)}; {skipped} are finer than the output stride"
            )
        check_vgg16_variant(input_shape, "FCNHead", "fcn")
        return {
            "input_shape": used,
            # The backbone's geometry (VGG16's pad-100 offsets) rides on its ShapeSpecs.
            "feature_grids": {f: grid_of(spec) for f, spec in used.items()},
            "conv_dims": scaled_width(cfg.MODEL.FCN.CONV_DIMS, cfg.MODEL.SEMSEG_HEADS.WIDTH_SCALE)
            if cfg.MODEL.FCN.CONV_DIMS > 0
            else 0,
            "norm": cfg.MODEL.FCN.NORM,
            "dropout": cfg.MODEL.FCN.DROPOUT,
            **loss_args_from_config(cfg),
        }

    def layers(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        first = self.in_features[0]
        x, grid = self.scores[first](features[first]), self.grids[first]
        for name, upscore in zip(self.in_features[1:], self.upscores):
            x = upscore(x)
            grid = grid.deconv(4, 2)
            skip = self.scores[name](features[name])
            x, skip, grid = align_and_crop(x, grid, skip, self.grids[name], what=f"FCN fuse {name}")
            x = x + skip
        x = self.final_upsample(x)
        grid = grid.deconv(2 * self.output_stride, self.output_stride)
        return crop_to_pixel_zero(x, grid, what="FCN output")


@META_ARCH_REGISTRY.register()
class FCN(SemSegSegmentor):
    """FCN-32s/16s/8s on VGG16 (``build_vgg16_backbone``, variant "fcn") or on a ResNet."""

    head_name = "FCNHead"
