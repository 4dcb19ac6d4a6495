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
from torch import nn

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

    def __init__(
        self,
        stem,
        stages,
        *,
        out_features: Sequence[str],
        freeze_at: int,
        output_stride: int | None = None,
    ):
        """``output_stride`` None: the stride of the deepest stage built (what the stages'
        strides and dilations give; LazyConfig files leave it out so a changed dilation holds)."""
        super().__init__(stem, stages, out_features=list(out_features), freeze_at=freeze_at)
        if output_stride is None:
            output_stride = max(self._out_feature_strides[name] for name in self.stage_names)
        self._size_divisibility = output_stride

    @property
    def size_divisibility(self) -> int:
        # Feature maps are exact multiples of the input only when the input divides the stride.
        return self._size_divisibility

    @staticmethod
    def make_dilated_stages(
        *,
        depth: int,
        in_channels: int,
        res2_out_channels: int,
        bottleneck_channels: int,
        num_groups: int = 1,
        norm: str = "BN",
        stride_in_1x1: bool = False,
        res4_dilation: int = 1,
        res5_dilation: int = 1,
    ) -> list[list]:
        """res2..res5 as torchvision's ``replace_stride_with_dilation`` makes them (the
        ``stages`` argument; ``ResNet.make_default_stages`` has no res4 dilation).
        ``bottleneck_channels`` is ``NUM_GROUPS * WIDTH_PER_GROUP``."""
        dilations = (res4_dilation, res5_dilation)
        if dilations not in _OUTPUT_STRIDE:
            raise ValueError(
                f"MODEL.RESNETS.RES4_DILATION/RES5_DILATION {dilations}: expected one of "
                f"{sorted(_OUTPUT_STRIDE)} (output stride 32, 16, 8)"
            )
        if depth not in _BLOCKS_PER_STAGE:
            raise ValueError(f"MODEL.RESNETS.DEPTH must be one of {sorted(_BLOCKS_PER_STAGE)}, got {depth}")
        basic = depth in (18, 34)
        if basic and dilations != (1, 1):
            raise ValueError(
                "ResNet-18/34 (BasicBlock) cannot be dilated: set RES4_DILATION/RES5_DILATION to 1"
            )
        out_channels, bottleneck = res2_out_channels, bottleneck_channels
        stage_dilation = {2: 1, 3: 1, 4: dilations[0], 5: dilations[1]}
        stages = []
        for stage, num_blocks in zip(range(2, 6), _BLOCKS_PER_STAGE[depth]):
            dilation, previous = stage_dilation[stage], stage_dilation.get(stage - 1, 1)
            # A stage either strides by 2 (res3..res5) or, when dilated, keeps the resolution.
            first_stride = 1 if stage == 2 or dilation > previous else 2
            kwargs = {
                "num_blocks": num_blocks,
                "stride_per_block": [first_stride] + [1] * (num_blocks - 1),
                "in_channels": in_channels,
                "out_channels": out_channels,
                "norm": norm,
            }
            if basic:
                kwargs["block_class"] = BasicBlock
            else:
                kwargs.update(
                    block_class=BottleneckBlock,
                    bottleneck_channels=bottleneck,
                    stride_in_1x1=stride_in_1x1,
                    num_groups=num_groups,
                    # torchvision: the first block of a dilated stage keeps the previous dilation.
                    dilation_per_block=[previous] + [dilation] * (num_blocks - 1),
                )
            stages.append(ResNet.make_stage(**kwargs))
            in_channels = out_channels
            out_channels *= 2
            bottleneck *= 2
        return stages


def dilated_resnet_output_shape(
    *,
    res2_out_channels: int,
    res4_dilation: int = 1,
    res5_dilation: int = 1,
    out_features: Sequence[str] = ("res5",),
) -> dict[str, ShapeSpec]:
    """The output shape of a ``DilatedResNet`` with these stages, without building it (for
    LazyConfig files, where the head's ``input_shape`` is written beside the backbone)."""
    dilations = (res4_dilation, res5_dilation)
    if dilations not in _OUTPUT_STRIDE:
        raise ValueError(f"res4/res5 dilations {dilations}: expected one of {sorted(_OUTPUT_STRIDE)}")
    strides = {"res2": 4, "res3": 8, "res4": 16 // res4_dilation, "res5": _OUTPUT_STRIDE[dilations]}
    channels = {f"res{k}": res2_out_channels * 2 ** (k - 2) for k in range(2, 6)}
    unknown = [f for f in out_features if f not in strides]
    if unknown:
        raise ValueError(f"DilatedResNet out_features {unknown}: expected some of {sorted(strides)}")
    return {f: ShapeSpec(channels=channels[f], stride=strides[f]) for f in out_features}


@BACKBONE_REGISTRY.register()
def build_dilated_resnet_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> DilatedResNet:
    """``MODEL.BACKBONE.NAME: build_dilated_resnet_backbone``: ``MODEL.RESNETS.*`` as Detectron2 reads
    them, plus ``RES4_DILATION``; widths scaled by ``MODEL.SEMSEG_HEADS.WIDTH_SCALE``."""
    r = cfg.MODEL.RESNETS
    scale = cfg.MODEL.SEMSEG_HEADS.WIDTH_SCALE
    if any(r.DEFORM_ON_PER_STAGE):
        raise ValueError(
            "MODEL.RESNETS.DEFORM_ON_PER_STAGE: build_dilated_resnet_backbone has no deformable convs"
        )
    stem_out = scaled_width(r.STEM_OUT_CHANNELS, scale)
    stem = BasicStem(in_channels=input_shape.channels, out_channels=stem_out, norm=r.NORM)
    stages = DilatedResNet.make_dilated_stages(
        depth=r.DEPTH,
        in_channels=stem_out,
        res2_out_channels=scaled_width(r.RES2_OUT_CHANNELS, scale),
        bottleneck_channels=r.NUM_GROUPS * scaled_width(r.WIDTH_PER_GROUP, scale),
        num_groups=r.NUM_GROUPS,
        norm=r.NORM,
        stride_in_1x1=r.STRIDE_IN_1X1,
        res4_dilation=r.RES4_DILATION,
        res5_dilation=r.RES5_DILATION,
    )
    if r.ZERO_INIT_RESIDUAL:
        zero_init_residual(stages)
    return DilatedResNet(
        stem,
        stages,
        out_features=r.OUT_FEATURES,
        freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT,
        output_stride=_OUTPUT_STRIDE[(r.RES4_DILATION, r.RES5_DILATION)],
    )


def zero_init_residual(stages: Sequence[Sequence[nn.Module]]) -> None:
    """Set the scale of each block's last norm to 0 (Goyal et al. 2017, Sec. 5.1; torchvision's
    ``zero_init_residual``), so that every residual block starts as the identity (its shortcut)."""
    for stage in stages:
        for block in stage:
            last = block.conv3 if isinstance(block, BottleneckBlock) else block.conv2
            if last.norm is None or not hasattr(last.norm, "weight"):
                raise ValueError(
                    "MODEL.RESNETS.ZERO_INIT_RESIDUAL needs a norm with a scale in every block: "
                    f"set MODEL.RESNETS.NORM (got a block whose last conv has norm {last.norm!r})"
                )
            nn.init.zeros_(last.norm.weight)
