"""Export of every semantic config to ONNX, checked in ONNX Runtime against PyTorch.

Models are built at a tiny width and their weights perturbed (FCN's score layers start at
zero, the dilated context module as an identity), so the comparison has logits to compare.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from detectron2.config import CfgNode
from detectron2.modeling import build_model
from PIL import Image

import semseg_heads  # noqa: F401  (registers the models)
from semseg_heads.config import get_semseg_heads_cfg
from semseg_heads.deploy import (
    CHECK_SIZES,
    ExportError,
    ONNXPredictor,
    SemSegExportWrapper,
    export_model,
)
from semseg_heads.engine import Predictor

pytest.importorskip("onnxruntime", reason="the deploy extra is not installed: pip install -e .[deploy]")

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "configs" / "ChairSegments"
SEMANTIC_CONFIGS = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if not p.stem.startswith("mask_rcnn"))
TINY = "0.0625"


def tiny_cfg(name: str, *opts: str) -> CfgNode:
    return get_semseg_heads_cfg(
        str(CONFIG_DIR / f"{name}.yaml"),
        ["MODEL.DEVICE", "cpu", "MODEL.SEMSEG_HEADS.WIDTH_SCALE", TINY, *opts],
    )


def export_perturbed(cfg: CfgNode, tmp) -> tuple[CfgNode, object]:
    """Export ``perturbed_model(cfg)`` to ``tmp/m.onnx`` with its weights in ``tmp/w.pth``;
    (cfg with MODEL.WEIGHTS set, path of the graph)."""
    model = perturbed_model(cfg)
    weights = tmp / "w.pth"
    torch.save({"model": model.state_dict()}, weights)
    cfg.MODEL.WEIGHTS = str(weights)
    export_model(cfg, str(tmp / "m.onnx"), optimize=False)
    return cfg, tmp / "m.onnx"


def perturbed_model(cfg: CfgNode, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


def test_configs_found():
    assert len(SEMANTIC_CONFIGS) >= 10, SEMANTIC_CONFIGS
    assert "deconvnet" in SEMANTIC_CONFIGS


@pytest.mark.parametrize("name", SEMANTIC_CONFIGS)
def test_onnx_export_agrees_with_pytorch(name, tmp_path):
    cfg = tiny_cfg(name)
    model = perturbed_model(cfg)
    out = tmp_path / "model.onnx"
    report = export_model(cfg, str(out), model=model, optimize=False)
    assert [(c.batch, c.height, c.width) for c in report.checks] == list(CHECK_SIZES)
    assert any(h % 2 for _, h, w in CHECK_SIZES)  # an odd size is among them
    for c in report.checks:
        assert c.max_abs_logit > 1e-3, "degenerate logits make the comparison meaningless"
        assert c.argmax_agreement >= 0.999
        assert c.max_abs_diff <= 1e-3 * max(1.0, c.max_abs_logit)
    side = json.loads((tmp_path / "model.onnx.json").read_text())
    assert side["inputs"][0]["shape"] == ["batch", 3, "height", "width"]
    assert side["outputs"][0]["shape"] == ["batch", 2, "height", "width"]
    assert side["preprocessing"]["pixel_mean"] == [123.675, 116.28, 103.53]
    import onnx

    proto = onnx.load(str(out))
    dims = [d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "", "height", "width"]
    if name == "deconvnet":
        # max-unpooling with the switches became ScatterND (not ONNX MaxUnpool, see export.py)
        assert "ScatterND" in {n.op_type for n in proto.graph.node}


@pytest.fixture(scope="module")
def tiny_unet_onnx(tmp_path_factory):
    """(cfg with MODEL.WEIGHTS, path of its exported .onnx) of a perturbed tiny U-Net."""
    tmp = tmp_path_factory.mktemp("unet_onnx")
    return export_perturbed(tiny_cfg("unet"), tmp)


def test_onnx_predictor_matches_predictor(tiny_unet_onnx):
    """Same interface and numbers as Predictor: a BGR image of another size in, sem_seg out."""
    cfg, onnx_path = tiny_unet_onnx
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (90, 121, 3), dtype=np.uint8)
    ref = Predictor(cfg)(image)["sem_seg"]
    predictor = ONNXPredictor(str(onnx_path))
    got = predictor(image)["sem_seg"]
    assert got.shape == ref.shape == (2, 90, 121)
    assert float((got.argmax(0) == ref.argmax(0)).float().mean()) >= 0.999
    assert float((got - ref).abs().max()) < 1e-3
    assert predictor.metadata.stuff_classes == ["background", "chair"]


def test_demo_runs_the_onnx_model(tiny_unet_onnx, tmp_path):
    _, onnx_path = tiny_unet_onnx
    image = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(image)
    cmd = [
        sys.executable, str(REPO / "tools" / "demo.py"), "--config-file", str(CONFIG_DIR / "unet.yaml"),
        "--input", str(image), "--output", str(tmp_path / "vis"), "--onnx", str(onnx_path),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert Image.open(tmp_path / "vis" / "in.png").size == (320, 256)  # drawn at --min-size 256


def test_onnx_predictor_without_sidecar(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"m\.onnx\.json"):
        ONNXPredictor(str(tmp_path / "m.onnx"))


class Histogram(torch.nn.Module):
    """An op without an ONNX translation (aten::histc)."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) + torch.histc(x, bins=4).sum()


def test_unexportable_layer_is_named(tmp_path):
    cfg = tiny_cfg("unet", "MODEL.UNET.DEPTH", "1")  # the smallest U-Net: export time is per op
    model = perturbed_model(cfg)
    model.sem_seg_head.predictor = Histogram(model.sem_seg_head.predictor)
    with pytest.raises(ExportError, match=r"sem_seg_head\.predictor.*histc"):
        export_model(cfg, str(tmp_path / "bad.onnx"), model=model, optimize=False)
    assert not (tmp_path / "bad.onnx").exists() and not list(tmp_path.iterdir())


def test_wrapper_refuses_instance_models():
    cfg = get_semseg_heads_cfg(str(CONFIG_DIR / "mask_rcnn_R_50_FPN.yaml"), ["MODEL.DEVICE", "cpu"])
    with pytest.raises(TypeError, match="semantic segmentors"):
        SemSegExportWrapper(build_model(cfg))


def test_export_tool_torchscript_and_refuses_overwrite(tmp_path):
    """tools/export_model.py end to end (TorchScript: no ONNX exporter time), then a second run
    onto the same file without --overwrite fails with a message."""
    cmd = [
        sys.executable, str(REPO / "tools" / "export_model.py"),
        "--config-file", str(CONFIG_DIR / "unet.yaml"), "--output", str(tmp_path), "--format", "torchscript",
        "MODEL.SEMSEG_HEADS.WIDTH_SCALE", TINY,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "argmax agreement 100.0000%" in done.stdout
    assert (tmp_path / "model.ts").is_file() and (tmp_path / "model.ts.json").is_file()
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 1 and "exists" in again.stderr


def test_layer_search_names_the_deepest_failing_module():
    """The module-by-module search (used when the exporter names no aten op)."""
    from semseg_heads.deploy import locate_unexportable_layer

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1), Histogram(torch.nn.Conv2d(3, 3, 1))).eval()
    layer, reason = locate_unexportable_layer(net, torch.rand(1, 3, 8, 8))
    assert layer == "1" and reason.startswith("Histogram") and "histc" in reason
