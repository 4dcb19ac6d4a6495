"""ONNXPredictor tiles around a graph that runs one tile, as the eager model tiles itself."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_export import export_perturbed, tiny_cfg

from semseg_heads.deploy import ONNXPredictor
from semseg_heads.engine import Predictor
from semseg_heads.modeling import InferenceSettings

pytest.importorskip("onnxruntime", reason="the deploy extra is not installed: pip install -e .[deploy]")

SLIDE = [
    "TEST.INFERENCE_MODE", "slide", "TEST.SLIDING_WINDOW.TILE_SIZE", "64",
    "TEST.SLIDING_WINDOW.STRIDE", "40", "TEST.SLIDING_WINDOW.BLEND", "gaussian",
    "TEST.SLIDING_WINDOW.BATCH_SIZE", "2",
]  # fmt: skip


@pytest.fixture(scope="module")
def slide_unet_onnx(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("slide_onnx")
    return export_perturbed(tiny_cfg("unet", *SLIDE), tmp)


def close(got: torch.Tensor, ref: torch.Tensor) -> None:
    assert got.shape == ref.shape
    assert float((got.argmax(0) == ref.argmax(0)).float().mean()) >= 0.999
    assert float((got - ref).abs().max()) < 1e-3 * max(1.0, float(ref.abs().max()))


def test_sidecar_records_the_inference_settings(slide_unet_onnx):
    _, path = slide_unet_onnx
    side = json.loads(path.with_name("m.onnx.json").read_text())
    assert side["preprocessing"]["inference"] == {
        "mode": "slide", "tile_size": 64, "stride": 40, "scale": 1.0, "blend": "gaussian", "batch_size": 2,
    }  # fmt: skip


@pytest.mark.parametrize("mode", ["slide", "whole", "resize"])
def test_onnx_tiling_equals_eager_tiling(slide_unet_onnx, mode):
    cfg, path = slide_unet_onnx
    image = np.random.default_rng(0).integers(0, 255, (150, 131, 3), dtype=np.uint8)
    settings = InferenceSettings.from_config(cfg) if mode == "slide" else InferenceSettings(mode=mode)
    ref = Predictor(cfg)(image, inference=settings)["sem_seg"]
    got = ONNXPredictor(str(path))(image, inference=settings)["sem_seg"]
    assert got.shape == (2, 150, 131)
    close(got, ref)


def test_sidecar_without_the_key_resizes(slide_unet_onnx, tmp_path):
    """Graphs exported before TEST.INFERENCE_MODE existed keep resizing."""
    _, path = slide_unet_onnx
    side = json.loads(path.with_name("m.onnx.json").read_text())
    del side["preprocessing"]["inference"]
    (tmp_path / "old.onnx").write_bytes(path.read_bytes())
    (tmp_path / "old.onnx.json").write_text(json.dumps(side))
    assert ONNXPredictor(str(tmp_path / "old.onnx")).inference.mode == "resize"
    side["preprocessing"]["inference"] = {"mode": "tiles"}
    (tmp_path / "old.onnx.json").write_text(json.dumps(side))
    with pytest.raises(ValueError, match="re-export"):
        ONNXPredictor(str(tmp_path / "old.onnx"))
