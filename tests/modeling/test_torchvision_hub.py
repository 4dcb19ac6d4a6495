"""``torchvision://`` in MODEL.WEIGHTS end to end, against a server on 127.0.0.1 serving a file
saved from a randomly initialised torchvision model (no machine here reaches torchvision's
URLs): download into the torch hub cache, hash check, conversion, backbone-only checkpoint,
loading through the project's checkpointer; a bad hash and an unreachable URL."""

from __future__ import annotations

import functools
import hashlib
import http.server
import socket
import threading
from pathlib import Path

import pytest
import torch
import torchvision
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import LazyConfig, instantiate
from detectron2.modeling import build_model
from detectron2.utils.file_io import PathManager
from modeling_utils import CONFIG_DIR

from semseg_heads.checkpoint import SafeDetectionCheckpointer
from semseg_heads.config import get_semseg_heads_cfg
from semseg_heads.modeling import torchvision_hub
from semseg_heads.modeling.torchvision_hub import TorchvisionWeightsError
from semseg_heads.modeling.torchvision_weights import convert_resnet

# The papers' configs and the starts they name.
PAPER_STARTS = {
    "fcn32s": "vgg16", "fcn16s": "vgg16", "fcn8s": "vgg16", "deconvnet": "vgg16_bn",
    "dilated_frontend": "vgg16", "dilated_basic": "vgg16", "dilated_large": "vgg16",
    "fcn_R_50": "resnet50", "fcn_R_101": "resnet101",
}  # fmt: skip


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server(tmp_path):
    """(folder served, base URL) of an HTTP server on 127.0.0.1."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def hub_dir(tmp_path, monkeypatch) -> Path:
    """An empty torch hub cache; no mirror from the environment."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(torchvision_hub.MIRROR_ENV, raising=False)
    hub = Path(torch.hub.get_dir())
    assert hub.is_relative_to(tmp_path), "torch.hub.set_dir() was called elsewhere"
    return hub


def _save_with_hash_name(state: dict, folder: Path, stem: str) -> str:
    """Save ``state`` as torchvision names its files: ``<stem>-<sha256 prefix>.pth``."""
    tmp = folder / f"{stem}.tmp"
    torch.save(state, tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    name = f"{stem}-{digest[:8]}.pth"
    tmp.rename(folder / name)
    return name


@pytest.mark.parametrize("config,start", sorted(PAPER_STARTS.items()))
def test_papers_configs_name_their_imagenet_start(config: str, start: str) -> None:
    cfg = get_semseg_heads_cfg(str(CONFIG_DIR / f"{config}.yaml"))
    assert cfg.MODEL.WEIGHTS == f"torchvision://{start}"
    assert start in torchvision_hub.WEIGHTS


def test_resnet50_downloads_converts_and_loads(server, hub_dir, monkeypatch) -> None:
    folder, base = server
    torch.manual_seed(0)
    resnet = torchvision.models.resnet50(weights=None)
    state = resnet.state_dict()
    name = _save_with_hash_name(state, folder, "resnet50")
    monkeypatch.setitem(torchvision_hub.URL_OVERRIDES, "resnet50", f"{base}/{name}")

    cfg = get_semseg_heads_cfg(str(CONFIG_DIR / "fcn_R_50.yaml"), ["MODEL.DEVICE", "cpu"])
    assert cfg.MODEL.WEIGHTS == "torchvision://resnet50"
    model = build_model(cfg)
    # Through Detectron2's PathManager: the handler is registered by `import semseg_heads`.
    SafeDetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)

    raw = hub_dir / "checkpoints" / name
    converted = hub_dir / "checkpoints" / "semseg_heads" / name
    assert raw.read_bytes() == (folder / name).read_bytes()
    checkpoint = torch.load(converted, weights_only=True)
    assert checkpoint["backbone_only"] is True
    expected, dropped = convert_resnet(state)
    assert dropped == ["fc.bias", "fc.weight"]
    ours = model.backbone.state_dict()
    assert set(expected) == set(ours)
    for key, value in expected.items():
        assert torch.equal(ours[key], value), key
    assert torch.equal(model.backbone.stem.conv1.weight, resnet.conv1.weight)
    assert torch.equal(model.backbone.res5[2].conv3.weight, resnet.layer4[2].conv3.weight)

    # Later uses read the cache: no server needed.
    (folder / name).unlink()
    assert PathManager.get_local_path("torchvision://resnet50") == str(converted)

    # The LazyConfig twin names the same start, and Detectron2's own checkpointer (the one
    # tools/lazyconfig_train_net.py uses) loads it into the lazily built model.
    lazy_cfg = LazyConfig.load(str(CONFIG_DIR / "fcn_R_50.py"))
    assert lazy_cfg.train.init_checkpoint == cfg.MODEL.WEIGHTS
    lazy = instantiate(lazy_cfg.model)
    DetectionCheckpointer(lazy).load(lazy_cfg.train.init_checkpoint)
    lazy_state = lazy.backbone.state_dict()
    for key, value in ours.items():
        assert torch.equal(lazy_state[key], value), key


def test_vgg_starts_fit_their_configs_backbones() -> None:
    """Names and shapes only (meta tensors: no memory for the 138M VGG16 weights)."""
    from detectron2.modeling import build_backbone

    from semseg_heads.modeling.torchvision_weights import convert_torchvision_state_dict

    for config, arch in (("fcn8s", "vgg16"), ("dilated_large", "vgg16"), ("deconvnet", "vgg16_bn")):
        cfg = get_semseg_heads_cfg(str(CONFIG_DIR / f"{config}.yaml"), ["MODEL.DEVICE", "cpu"])
        with torch.device("meta"):
            source = getattr(torchvision.models, arch)(weights=None).state_dict()
            backbone = build_backbone(cfg)
        converted, _, _ = convert_torchvision_state_dict(source, prefix="")
        ours = backbone.state_dict()
        assert set(converted) == set(ours), (config, set(converted) ^ set(ours))
        for key, value in converted.items():
            assert value.shape == ours[key].shape, (config, key)


def test_a_bad_hash_is_rejected_and_deleted(server, hub_dir, monkeypatch) -> None:
    folder, base = server
    (folder / "vgg16-00000000.pth").write_bytes(b"not the published file")
    url = f"{base}/vgg16-00000000.pth"
    monkeypatch.setitem(torchvision_hub.URL_OVERRIDES, "vgg16", url)
    with pytest.raises(TorchvisionWeightsError, match="hash") as info:
        PathManager.get_local_path("torchvision://vgg16")
    assert url in str(info.value)
    checkpoints = hub_dir / "checkpoints"
    assert not checkpoints.exists() or not any(checkpoints.rglob("*")), list(checkpoints.rglob("*"))


def test_an_unreachable_url_gives_one_line_naming_the_url_and_the_offline_route(hub_dir, monkeypatch) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/vgg16-397923af.pth"
    monkeypatch.setitem(torchvision_hub.URL_OVERRIDES, "vgg16", url)
    opts = ["MODEL.DEVICE", "cpu", "MODEL.SEMSEG_HEADS.WIDTH_SCALE", "0.0625"]
    cfg = get_semseg_heads_cfg(str(CONFIG_DIR / "fcn8s.yaml"), opts)
    model = build_model(cfg)
    with pytest.raises(TorchvisionWeightsError) as info:
        SafeDetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    message = str(info.value)
    assert "\n" not in message
    assert url in message and "tools/convert_torchvision_weights.py" in message
    assert not (hub_dir / "checkpoints" / "vgg16-397923af.pth").exists()


def test_the_mirror_replaces_torchvisions_host(hub_dir, monkeypatch, tmp_path) -> None:
    """The published file names under another base URL (here a folder that lacks them)."""
    mirror = (tmp_path / "mirror").as_uri()
    monkeypatch.setenv(torchvision_hub.MIRROR_ENV, mirror)
    assert torchvision_hub.weights_url("resnet101") == f"{mirror}/resnet101-63fe2227.pth"
    with pytest.raises(TorchvisionWeightsError, match="cannot download") as info:
        PathManager.get_local_path("torchvision://resnet101")
    assert f"{mirror}/resnet101-63fe2227.pth" in str(info.value)


def test_an_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(TorchvisionWeightsError, match="torchvision://vgg16_bn"):
        PathManager.get_local_path("torchvision://vgg19")
