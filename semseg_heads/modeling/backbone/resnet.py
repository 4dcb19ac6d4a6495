"""Detectron2's ResNet with res4/res5 strides traded for dilation, for FCN-ResNet50/101.

The FCN-ResNet baselines of Chair Segments are torchvision's ``fcn_resnet50/101``, whose
backbone uses ``replace_stride_with_dilation=[False, True, True]``: output stride 8, and in a
dilated stage the first block keeps the previous dilation while the others use the new one.
This builds that network from Detectron2's own ``BasicStem``, ``BottleneckBlock`` and
``ResNet``, so parameter names match Detectron2's (``stem.conv1``, ``res2.0.conv1``...) and
torchvision weights convert one to one. ``MODEL.RESNETS.RES4_DILATION`` / ``RES5_DILATION``:
(1, 1) output stride 32, (1, 2) 16, (2, 4) 8.
"""

from __future__ import annotations

from collections.abc import Sequence

from detectron2.config import CfgNode
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone.resnet import BasicBlock, BasicStem, BottleneckBlock, ResNet

from ..layers import scaled_width

_BLOCKS_PER_STAGE = {
    18: [2, 2, 2, 2],
    34: [3, 4, 6, 3],
    50: [3, 4, 6, 3],
    101: [3, 4, 23, 3],
    152: [3, 8, 36, 3],
}
_OUTPUT_STRIDE = {(1, 1): 32, (1, 2): 16, (2, 4): 8}


class DilatedResNet(ResNet):
    """Detectron2's ``ResNet`` that also declares the input divisibility its output stride needs."""

    def __init__(self, stem, stages, *, out_features: Sequence[str], freeze_at: int, output_stride: int):
        super().__init__(stem, stages, out_features=list(out_features), freeze_at=freeze_at)
        self._size_divisibility = output_stride

    @property
    def size_divisibility(self) -> int:
        # Feature maps are exact multiples of the input only when the input divides the stride.
        return self._size_divisibility


@BACKBONE_REGISTRY.register()
def build_dilated_resnet_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> DilatedResNet:
    """``MODEL.BACKBONE.NAME: build_dilated_resnet_backbone``: ``MODEL.RESNETS.*`` as Detectron2 reads
    them, plus ``RES4_DILATION``; widths scaled by ``MODEL.SEMSEG_HEADS.WIDTH_SCALE``."""
    r = cfg.MODEL.RESNETS
    scale = cfg.MODEL.SEMSEG_HEADS.WIDTH_SCALE
    dilations = (r.RES4_DILATION, r.RES5_DILATION)
    if dilations not in _OUTPUT_STRIDE:
        raise ValueError(
            f"MODEL.RESNETS.RES4_DILATION/RES5_DILATION {dilations}: expected one of "
            f"{sorted(_OUTPUT_STRIDE)} (output stride 32, 16, 8)"
        )
    if r.DEPTH not in _BLOCKS_PER_STAGE:
        raise ValueError(f"MODEL.RESNETS.DEPTH must be one of {sorted(_BLOCKS_PER_STAGE)}, got {r.DEPTH}")
    if any(r.DEFORM_ON_PER_STAGE):
        raise ValueError(
            "MODEL.RESNETS.DEFORM_ON_PER_STAGE: build_dilated_resnet_backbone has no deformable convs"
        )
    basic = r.DEPTH in (18, 34)
    if basic and dilations != (1, 1):
        raise ValueError("ResNet-18/34 (BasicBlock) cannot be dilated: set RES4_DILATION/RES5_DILATION to 1")

    stem_out = scaled_width(r.STEM_OUT_CHANNELS, scale)
    stem = BasicStem(in_channels=input_shape.channels, out_channels=stem_out, norm=r.NORM)
    in_channels = stem_out
    out_channels = scaled_width(r.RES2_OUT_CHANNELS, scale)
    bottleneck = r.NUM_GROUPS * scaled_width(r.WIDTH_PER_GROUP, scale)
    stage_dilation = {2: 1, 3: 1, 4: dilations[0], 5: dilations[1]}
    stages = []
    for stage, num_blocks in zip(range(2, 6), _BLOCKS_PER_STAGE[r.DEPTH]):
        dilation, previous = stage_dilation[stage], stage_dilation.get(stage - 1, 1)
        # A stage either strides by 2 (res3..res5) or, when dilated, keeps the resolution.
        first_stride = 1 if stage == 2 or dilation > previous else 2
        kwargs = {
            "num_blocks": num_blocks,
            "stride_per_block": [first_stride] + [1] * (num_blocks - 1),
            "in_channels": in_channels,
            "out_channels": out_channels,
            "norm": r.NORM,
        }
        if basic:
            kwargs["block_class"] = BasicBlock
        else:
            kwargs.update(
                block_class=BottleneckBlock,
                bottleneck_channels=bottleneck,
                stride_in_1x1=r.STRIDE_IN_1X1,
                num_groups=r.NUM_GROUPS,
                # torchvision: the first block of a dilated stage keeps the previous dilation.
                dilation_per_block=[previous] + [dilation] * (num_blocks - 1),
            )
        stages.append(ResNet.make_stage(**kwargs))
        in_channels = out_channels
        out_channels *= 2
        bottleneck *= 2
    return DilatedResNet(
        stem,
        stages,
        out_features=r.OUT_FEATURES,
        freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT,
        output_stride=_OUTPUT_STRIDE[dilations],
    )
