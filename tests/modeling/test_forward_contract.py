"""Every config: finite training losses, ``sem_seg`` at the requested size, no unused parameter."""

from __future__ import annotations

import math

import pytest
import torch
from detectron2.modeling import build_model
from modeling_utils import MODEL_CONFIGS, build, model_cfg

SIZES = [(63, 65), (64, 64), (128, 96)]


def _inputs(seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [
        {
            "image": torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8),
            "sem_seg": torch.randint(0, 2, (h, w), generator=g),
            "height": h,
            "width": w,
        }
        for h, w in SIZES
    ]


def _check_train_and_eval(model: torch.nn.Module) -> None:
    inputs = _inputs()
    model.train()
    losses = model(inputs)
    assert losses and all(k.startswith("loss_") for k in losses)
    assert all(math.isfinite(v.item()) for v in losses.values()), losses
    sum(losses.values()).backward()
    # DistributedDataParallel without find_unused_parameters needs every parameter in the graph.
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused, f"parameters without gradient: {unused}"

    model.eval()
    with torch.no_grad():
        outputs = model(inputs)
    assert [tuple(o["sem_seg"].shape) for o in outputs] == [(2, h, w) for h, w in SIZES]
    assert all(torch.isfinite(o["sem_seg"]).all() for o in outputs)
    # The requested output size may differ from the input's (Detectron2's sem_seg_postprocess).
    with torch.no_grad():
        (resized,) = model([{"image": inputs[0]["image"], "height": 30, "width": 40}])
    assert resized["sem_seg"].shape == (2, 30, 40)


@pytest.mark.parametrize("name", MODEL_CONFIGS)
def test_config_trains_and_predicts_at_any_size(name: str) -> None:
    _check_train_and_eval(build(name))


@pytest.mark.parametrize(
    "name,opts",
    [
        ("fcn8s", ("MODEL.VGG.PAD_INPUT", 100)),  # the paper's padding: any size, Caffe crops
        ("fcn32s", ("MODEL.VGG.PAD_INPUT", 100)),
        ("unet", ("MODEL.UNET.BILINEAR", True)),
        ("unet", ("MODEL.UNET.DEPTH", 3)),
        ("fcn8s", ("MODEL.SEMSEG_HEADS.LOSS_TYPE", "cross_entropy+dice")),
        ("unet", ("MODEL.SEMSEG_HEADS.LOSS_TYPE", "dice")),
        (
            "fcn_R_50",
            ("MODEL.RESNETS.RES4_DILATION", 1, "MODEL.RESNETS.RES5_DILATION", 2)
            + ("MODEL.FCN.OUTPUT_STRIDE", 16),
        ),
    ],
)
def test_variants_train_and_predict(name: str, opts: tuple) -> None:
    _check_train_and_eval(build(name, 0.0625, *opts))


def test_pad100_reproduces_caffe_crop_offsets() -> None:
    """With conv1_1 padded by 100, the grid arithmetic gives the offsets of FCN's Caffe models."""
    from semseg_heads.modeling.backbone.vgg import vgg16_feature_grids
    from semseg_heads.modeling.layers import Grid

    grids = vgg16_feature_grids(pad_input=100)
    up = grids["fc7"].deconv(4, 2)
    assert (up.offset - grids["pool4"].offset) / 16 == 5  # score_pool4c
    assert -grids["fc7"].deconv(64, 32).offset == 19  # FCN-32s upscore crop
    fused16 = Grid(16, up.offset)
    assert -fused16.deconv(32, 16).offset == 27  # FCN-16s
    up8 = fused16.deconv(4, 2)
    assert (up8.offset - grids["pool3"].offset) / 8 == 9  # score_pool3c
    assert -Grid(8, up8.offset).deconv(16, 8).offset == 31  # FCN-8s


def test_vgg_hands_its_geometry_to_the_fcn_head() -> None:
    model = build("fcn8s", 0.0625, "MODEL.VGG.PAD_INPUT", 100)
    grids = model.backbone.feature_grids()
    assert {n: g.as_tuple() for n, g in model.sem_seg_head.grids.items()} == {
        n: grids[n].as_tuple() for n in ("pool3", "pool4", "fc7")
    }
    assert grids["pool3"].offset != (8 - 1) / 2  # not the cell-centred default: pad 100 shifts it


def test_heads_run_in_detectron2_semantic_segmentor() -> None:
    """The heads follow Detectron2's head interface: its own SemanticSegmentor can use them."""
    for name, opts in [
        ("fcn_R_50", ()),
        # The pad-100 geometry reaches FCNHead on the backbone's ShapeSpecs, in any meta-arch.
        ("fcn8s", ("MODEL.VGG.PAD_INPUT", 100)),
        ("deconvnet", ()),
        ("unet", ()),
        ("dilated_basic", ()),
    ]:
        cfg = model_cfg(name, 0.0625, "MODEL.META_ARCHITECTURE", "SemanticSegmentor", *opts)
        torch.manual_seed(0)
        model = build_model(cfg)
        assert type(model).__name__ == "SemanticSegmentor"
        _check_train_and_eval(model)


def test_fcn_head_fuses_skips_on_detectron2_resnet() -> None:
    """FCN-8s-style fusion of res5/res4/res3 on Detectron2's own (undilated) ResNet builder."""
    model = build(
        "fcn_R_50",
        0.0625,
        "MODEL.BACKBONE.NAME", "build_resnet_backbone",
        "MODEL.RESNETS.RES4_DILATION", 1,
        "MODEL.RESNETS.RES5_DILATION", 1,
        "MODEL.RESNETS.OUT_FEATURES", ["res3", "res4", "res5"],
        "MODEL.SEM_SEG_HEAD.IN_FEATURES", ["res3", "res4", "res5"],
        "MODEL.FCN.OUTPUT_STRIDE", 8,
    )  # fmt: skip
    assert type(model.backbone).__name__ == "ResNet" and len(model.sem_seg_head.upscores) == 2
    _check_train_and_eval(model)


def test_mismatched_head_name_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="MODEL.SEM_SEG_HEAD.NAME"):
        build("fcn8s", 0.0625, "MODEL.SEM_SEG_HEAD.NAME", "UNetHead")


@pytest.mark.parametrize(
    "opts,match",
    [
        (("MODEL.VGG.VARIANT", "vgg19"), "MODEL.VGG.VARIANT"),
        (("MODEL.FCN.OUTPUT_STRIDE", 4), "MODEL.FCN.OUTPUT_STRIDE"),
        (("MODEL.SEM_SEG_HEAD.IN_FEATURES", ["conv9"]), "IN_FEATURES"),
        (("MODEL.VGG.OUT_FEATURES", ["pool9"]), "MODEL.VGG.OUT_FEATURES"),
        (("MODEL.SEMSEG_HEADS.LOSS_TYPE", "focal"), "LOSS_TYPE"),
        (("MODEL.SEMSEG_HEADS.CLASS_WEIGHTS", [1.0]), "CLASS_WEIGHTS"),
        (("MODEL.SEMSEG_HEADS.WIDTH_SCALE", 0.0), "WIDTH_SCALE"),
    ],
)
def test_bad_config_values_name_the_key(opts: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build("fcn8s", 0.0625, *opts)


def test_bad_inputs_are_clear_errors() -> None:
    model = build("unet").train()
    image = torch.zeros(3, 32, 32, dtype=torch.uint8)
    with pytest.raises(ValueError, match="training needs 'sem_seg'"):
        model([{"image": image}])
    with pytest.raises(ValueError, match="'image' must be a \\(3, H, W\\)"):
        model([{"image": torch.zeros(1, 32, 32), "sem_seg": torch.zeros(32, 32, dtype=torch.long)}])
    with pytest.raises(ValueError, match="'sem_seg' must be an \\(H, W\\) tensor"):
        model([{"image": image, "sem_seg": torch.zeros(31, 32, dtype=torch.long)}])
    with pytest.raises(ValueError, match="DeconvNetHead needs MODEL.VGG.VARIANT 'deconvnet'"):
        build("deconvnet", 0.0625, "MODEL.VGG.VARIANT", "fcn")
    with pytest.raises(ValueError, match="DilatedContextHead needs MODEL.VGG.VARIANT 'dilated'"):
        build("dilated_basic", 0.0625, "MODEL.VGG.VARIANT", "fcn")
