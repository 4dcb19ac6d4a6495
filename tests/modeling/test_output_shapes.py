"""The ``*_output_shape`` helpers (LazyConfig files write heads' input shapes with them) agree
with the output shapes of the backbones they describe."""

from __future__ import annotations

import pytest
from detectron2.modeling.backbone import BasicStem

from semseg_heads.modeling import (
    VGG16,
    DilatedResNet,
    UNetEncoder,
    dilated_resnet_output_shape,
    unet_output_shape,
    vgg16_output_shape,
)

WIDTHS = dict(widths=[4, 8, 16, 32, 32], fc_width=64)


def describe(shapes: dict) -> dict:
    return {
        name: (
            s.channels,
            s.stride,
            getattr(s, "grid", None) and s.grid.as_tuple(),
            getattr(s, "vgg_variant", None),
        )
        for name, s in shapes.items()
    }


@pytest.mark.parametrize(
    "args",
    [
        dict(out_features=["pool3", "pool4", "fc7"]),
        dict(out_features=["pool3", "pool4", "fc7"], pad_input=100),
        dict(out_features=["pool1", "pool2", "pool3", "pool4", "pool5", "fc7"], record_switches=True),
        dict(out_features=["conv5", "fc7"], dilated=True),
    ],
    ids=["fcn", "fcn-pad100", "deconvnet", "dilated"],
)
def test_vgg16_output_shape(args: dict) -> None:
    assert describe(vgg16_output_shape(**WIDTHS, **args)) == describe(VGG16(**WIDTHS, **args).output_shape())


def test_vgg16_output_shape_names_unknown_features() -> None:
    with pytest.raises(ValueError, match="pool4"):
        vgg16_output_shape(**WIDTHS, dilated=True, out_features=["pool4"])


@pytest.mark.parametrize("bilinear", [False, True])
def test_unet_output_shape(bilinear: bool) -> None:
    args = dict(base_width=4, depth=3, bilinear=bilinear)
    assert describe(unet_output_shape(**args)) == describe(UNetEncoder(**args).output_shape())


@pytest.mark.parametrize("dilations", [(1, 1), (1, 2), (2, 4)])
def test_dilated_resnet_output_shape(dilations: tuple[int, int]) -> None:
    features = ["res2", "res3", "res4", "res5"]
    stages = DilatedResNet.make_dilated_stages(
        depth=50,
        in_channels=4,
        res2_out_channels=16,
        bottleneck_channels=4,
        res4_dilation=dilations[0],
        res5_dilation=dilations[1],
    )
    stride = {(1, 1): 32, (1, 2): 16, (2, 4): 8}[dilations]
    built = DilatedResNet(
        BasicStem(in_channels=3, out_channels=4),
        stages,
        out_features=features,
        freeze_at=0,
        output_stride=stride,
    )
    expected = dilated_resnet_output_shape(
        res2_out_channels=16, res4_dilation=dilations[0], res5_dilation=dilations[1], out_features=features
    )
    assert describe(expected) == describe(built.output_shape())
