"""tools/convert_torchvision_weights.py on randomly initialised torchvision models saved to disk:
every converted key loads (no missing, no unexpected) and features equal torchvision's."""

from __future__ import annotations

import pytest
import torch
import torchvision
from detectron2.checkpoint import DetectionCheckpointer
from modeling_utils import build, load_tool

from semseg_heads.modeling.backbone.vgg import VGG16

convert_torchvision_weights = load_tool("convert_torchvision_weights")


def _convert(tmp_path, model: torch.nn.Module, *flags: str) -> dict:
    src, dst = tmp_path / "torchvision.pth", tmp_path / "converted.pth"
    torch.save(model.state_dict(), src)
    # --overwrite: some tests convert twice into the same file
    assert convert_torchvision_weights.main([str(src), str(dst), "--overwrite", *flags]) == 0
    checkpoint = torch.load(dst, weights_only=True)
    assert checkpoint["matching_heuristics"] is False
    assert all(k.startswith("backbone.") for k in checkpoint["model"])
    src.unlink()
    return checkpoint


def _strip(state: dict) -> dict:
    return {k[len("backbone.") :]: v for k, v in state.items()}


def _load_strict(module: torch.nn.Module, state: dict) -> None:
    result = module.load_state_dict(_strip(state), strict=False)
    assert not result.missing_keys and not result.unexpected_keys, result


def _torchvision_vgg_features(vgg, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """pool5 of ``x``, and fc7 (after ReLU) of a random 7x7 pool5 map."""
    pool5 = vgg.features(x)
    torch.manual_seed(1)
    fake_pool5 = torch.rand(1, 512, 7, 7)
    fc7 = vgg.classifier[:5](torch.flatten(fake_pool5, 1))
    return pool5, fc7, fake_pool5


def _our_vgg_features(backbone: VGG16, x: torch.Tensor, fake_pool5: torch.Tensor):
    pool5 = backbone(x)["pool5"]
    fc7 = backbone.fc7(backbone.fc6(fake_pool5))[:, :, 3, 3]  # fc6 padded by 3: the centre sees all 7x7
    return pool5, fc7


def test_vgg16_converts_and_loads_through_model_weights(tmp_path) -> None:
    torch.manual_seed(0)
    vgg = torchvision.models.vgg16(weights=None).eval()
    checkpoint = _convert(tmp_path, vgg)
    # MODEL.WEIGHTS path: Detectron2's checkpointer loads it into the FCN model by exact names.
    model = build("fcn32s", None, "MODEL.VGG.OUT_FEATURES", ["pool3", "pool4", "pool5", "fc7"]).eval()
    _load_strict(model.backbone, checkpoint["model"])
    model = build("fcn32s", None, "MODEL.VGG.OUT_FEATURES", ["pool3", "pool4", "pool5", "fc7"], seed=1).eval()
    DetectionCheckpointer(model).load(str(tmp_path / "converted.pth"))
    for key, value in _strip(checkpoint["model"]).items():
        assert torch.equal(model.backbone.state_dict()[key], value), key
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        ours = _our_vgg_features(model.backbone, x, _torchvision_vgg_features(vgg, x)[2])
        theirs = _torchvision_vgg_features(vgg, x)[:2]
    for a, b in zip(ours, theirs):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
    del model, checkpoint
    # A DeconvNet-style target (BN after every layer) gets identity BNs: the same function.
    target = VGG16(norm="BN", record_switches=True, fc_dropout=0.0, out_features=("pool5", "fc7")).eval()
    _load_strict(target, _convert(tmp_path, vgg, "--vgg-norm", "BN")["model"])
    with torch.no_grad():
        ours = _our_vgg_features(target, x, _torchvision_vgg_features(vgg, x)[2])
    for a, b in zip(ours, theirs):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4)


def test_vgg16_bn_converts_with_and_without_bn(tmp_path) -> None:
    torch.manual_seed(0)
    vgg = torchvision.models.vgg16_bn(weights=None)
    # Non-trivial BN statistics, so that folding them is really tested.
    with torch.no_grad():
        for m in vgg.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    vgg.eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        pool5, fc7, fake = _torchvision_vgg_features(vgg, x)
    for flags, norm in [((), "BN"), (("--vgg-norm", "none"), "")]:
        target = VGG16(norm=norm, fc_dropout=0.0, out_features=("pool5", "fc7")).eval()
        _load_strict(target, _convert(tmp_path, vgg, *flags)["model"])
        with torch.no_grad():
            ours = _our_vgg_features(target, x, fake)
        assert torch.allclose(ours[0], pool5, rtol=1e-4, atol=1e-4), norm
        assert torch.allclose(ours[1], fc7, rtol=1e-4, atol=1e-4), norm


@pytest.mark.parametrize("depth", [50])
def test_resnet_converts_to_the_dilated_backbone(tmp_path, depth: int) -> None:
    torch.manual_seed(0)
    resnet = getattr(torchvision.models, f"resnet{depth}")(
        weights=None, replace_stride_with_dilation=[False, True, True]
    )
    resnet.eval()
    checkpoint = _convert(tmp_path, resnet)
    model = build(f"fcn_R_{depth}", None, seed=1).eval()
    _load_strict(model.backbone, checkpoint["model"])
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        y = resnet.maxpool(resnet.relu(resnet.bn1(resnet.conv1(x))))
        y = resnet.layer4(resnet.layer3(resnet.layer2(resnet.layer1(y))))
        ours = model.backbone(x)["res5"]
    assert ours.shape == y.shape == (1, 2048, 8, 8)  # output stride 8
    assert torch.allclose(ours, y, rtol=1e-4, atol=1e-4)


def test_unknown_state_dict_is_a_clear_error(tmp_path, capsys) -> None:
    path = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(1)}, path)
    assert convert_torchvision_weights.main([str(path), str(tmp_path / "out.pth")]) == 1
    assert "not a torchvision VGG16 or ResNet state dict" in capsys.readouterr().err


def test_existing_output_is_kept_unless_overwrite(tmp_path, capsys) -> None:
    src, dst = tmp_path / "vgg16.pth", tmp_path / "out.pth"
    torch.save(torchvision.models.vgg16(weights=None).state_dict(), src)
    dst.write_bytes(b"keep me")
    assert convert_torchvision_weights.main([str(src), str(dst)]) == 1
    assert "--overwrite" in capsys.readouterr().err and dst.read_bytes() == b"keep me"
    assert convert_torchvision_weights.main([str(src), str(dst), "--overwrite"]) == 0
    assert torch.load(dst, weights_only=True)["backbone_only"] is True
