"""build_unet_pyramid_backbone: both U-Net paths as a Detectron2 backbone, started from a trained
U-Net through tools/convert_unet_to_pyramid.py."""

from __future__ import annotations

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone, build_model
from modeling_utils import REPO, build, load_tool, model_cfg

from semseg_heads.checkpoint import PartialWeightsError, SafeDetectionCheckpointer
from semseg_heads.config import get_semseg_heads_cfg
from semseg_heads.modeling.backbone import UNetEncoder, UNetPyramid, unet_pyramid_weights

convert_unet_to_pyramid = load_tool("convert_unet_to_pyramid")
RECIPE = REPO / "configs" / "ChairSegments" / "recipes" / "mask_rcnn_unet_semstart.yaml"


@pytest.mark.parametrize("bilinear", [False, True])
def test_output_shape_is_what_forward_returns(bilinear):
    encoder = UNetEncoder(base_width=4, depth=3, bilinear=bilinear)
    pyramid = UNetPyramid(encoder).eval()
    out = pyramid(torch.rand(2, 3, 32, 48))
    shapes = pyramid.output_shape()
    assert list(out) == ["up0", "up1", "up2", "level3"]
    for name, feature in out.items():
        stride = shapes[name].stride
        assert feature.shape == (2, shapes[name].channels, 32 // stride, 48 // stride), name


def test_converted_unet_gives_the_unet_features(tmp_path):
    """A U-Net's weights converted and loaded: ``up0`` through U-Net's classifier is U-Net's output."""
    unet = build("unet", 0.0625, "MODEL.UNET.DEPTH", "3", seed=3).eval()
    for m in unet.modules():  # non-trivial BN statistics, so a missed buffer would show
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    src, dst = tmp_path / "unet.pth", tmp_path / "start.pth"
    DetectionCheckpointer(unet, str(tmp_path)).save("unet")
    assert convert_unet_to_pyramid.main([str(src), str(dst)]) == 0

    cfg = model_cfg(
        "unet", 0.0625, "MODEL.UNET.DEPTH", "3", "MODEL.BACKBONE.NAME", "build_unet_pyramid_backbone"
    )
    pyramid = build_backbone(cfg, ShapeSpec(channels=3)).eval()
    state = torch.load(dst, weights_only=True)
    assert state["backbone_only"] is True
    result = pyramid.load_state_dict({k[len("backbone.") :]: v for k, v in state["model"].items()})
    assert not result.missing_keys and not result.unexpected_keys

    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        expected = unet.sem_seg_head.layers(unet.backbone(x))
        got = unet.sem_seg_head.predictor(pyramid(x)["up0"])
    torch.testing.assert_close(got, expected)


def test_recipe_loads_the_converted_start(tmp_path):
    """The Mask R-CNN recipe takes the converted file as MODEL.WEIGHTS: its backbone gets every
    tensor, its heads keep their initialisation, and no partial-weights error is raised."""
    unet = build("unet", 0.0625, seed=1)
    DetectionCheckpointer(unet, str(tmp_path)).save("unet")
    src, dst = str(tmp_path / "unet.pth"), str(tmp_path / "start.pth")
    assert convert_unet_to_pyramid.main([src, dst]) == 0

    small = ["MODEL.DEVICE", "cpu", "MODEL.SEMSEG_HEADS.WIDTH_SCALE", "0.0625"]
    cfg = get_semseg_heads_cfg(str(RECIPE), small)
    detector = build_model(cfg)
    SafeDetectionCheckpointer(detector).load(dst)
    ours, theirs = detector.backbone.state_dict(), unet.state_dict()
    pairs = {
        "encoder.level2.0.weight": "backbone.level2.0.weight",
        "ups.0.up.weight": "sem_seg_head.ups.0.up.weight",
        "ups.2.conv.1.norm.running_var": "sem_seg_head.ups.2.conv.1.norm.running_var",
    }
    for name, source in pairs.items():
        torch.testing.assert_close(ours[name], theirs[source])


def test_other_weights_are_refused_naming_what_was_expected(tmp_path, capsys):
    with pytest.raises(ValueError, match="backbone.level\\*, sem_seg_head.ups"):
        unet_pyramid_weights({"backbone.res2.0.conv1.weight": torch.zeros(1)})
    fcn = build("fcn8s", 0.0625)
    DetectionCheckpointer(fcn, str(tmp_path)).save("fcn")
    assert convert_unet_to_pyramid.main([str(tmp_path / "fcn.pth"), str(tmp_path / "out.pth")]) == 1
    assert "expected the weights of a U-Net" in capsys.readouterr().err
    assert not (tmp_path / "out.pth").exists()


def test_unconverted_unet_weights_name_the_conversion(tmp_path):
    unet = build("unet", 0.0625, seed=1)
    DetectionCheckpointer(unet, str(tmp_path)).save("unet")
    small = ["MODEL.DEVICE", "cpu", "MODEL.SEMSEG_HEADS.WIDTH_SCALE", "0.0625"]
    detector = build_model(get_semseg_heads_cfg(str(RECIPE), small))
    with pytest.raises(PartialWeightsError, match="tools/convert_unet_to_pyramid.py"):
        SafeDetectionCheckpointer(detector).load(str(tmp_path / "unet.pth"))


def test_existing_output_is_kept_unless_overwrite(tmp_path, capsys):
    """Like tools/export_model.py: an existing output is refused (exit 1, the file untouched,
    the flag named); --overwrite replaces it; no temporary file is left behind."""
    unet = build("unet", 0.0625, "MODEL.UNET.DEPTH", "2", seed=1)
    DetectionCheckpointer(unet, str(tmp_path)).save("unet")
    src, dst = str(tmp_path / "unet.pth"), tmp_path / "start.pth"
    dst.write_bytes(b"keep me")
    assert convert_unet_to_pyramid.main([src, str(dst)]) == 1
    assert "--overwrite" in capsys.readouterr().err and dst.read_bytes() == b"keep me"
    assert convert_unet_to_pyramid.main([src, str(dst), "--overwrite"]) == 0
    assert torch.load(dst, weights_only=True)["backbone_only"] is True
    assert not list(tmp_path.glob(".start.pth.tmp-*"))  # atomic_path's temporary name


def test_ema_converts_the_moving_average(tmp_path, capsys):
    """--ema takes the checkpoint's 'model_ema' average; without it the trained weights are
    converted and the average is named; --ema on a checkpoint without one is refused."""
    unet = build("unet", 0.0625, "MODEL.UNET.DEPTH", "2", seed=1)
    state = unet.state_dict()
    average = {k: v + 1 if v.is_floating_point() else v for k, v in state.items()}
    src = tmp_path / "unet.pth"
    torch.save({"model": state, "model_ema": {"state": average, "num_updates": 7, "decay": 0.99}}, src)
    ours, theirs = "backbone.level0.0.weight", "backbone.encoder.level0.0.weight"
    assert convert_unet_to_pyramid.main([str(src), str(tmp_path / "trained.pth")]) == 0
    assert "--ema converts that instead" in capsys.readouterr().out
    assert torch.equal(torch.load(tmp_path / "trained.pth", weights_only=True)["model"][theirs], state[ours])
    assert convert_unet_to_pyramid.main([str(src), str(tmp_path / "ema.pth"), "--ema"]) == 0
    assert torch.equal(torch.load(tmp_path / "ema.pth", weights_only=True)["model"][theirs], average[ours])
    plain = tmp_path / "plain.pth"
    torch.save({"model": state}, plain)
    assert convert_unet_to_pyramid.main([str(plain), str(tmp_path / "x.pth"), "--ema"]) == 1
    assert "MODEL_EMA.ENABLED" in capsys.readouterr().err and not (tmp_path / "x.pth").exists()
