"""TEST.INFERENCE_MODE: tiles cover the image and blend seamlessly, "whole" / "slide" agree with
each other where they must, and the default ("resize") keeps Detectron2's outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from detectron2.engine import DefaultPredictor
from detectron2.modeling import Backbone, ShapeSpec
from modeling_utils import build, model_cfg
from torch import nn

from semseg_heads.engine import Predictor
from semseg_heads.modeling import InferenceSettings, SemSegSegmentor, sliding_window_logits
from semseg_heads.modeling.sliding_window import tile_starts


class PassThroughBackbone(Backbone):
    """The normalised image as the one feature map."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"image": x}

    def output_shape(self) -> dict[str, ShapeSpec]:
        return {"image": ShapeSpec(channels=3, stride=1)}


class PositionalHead(nn.Module):
    """Logits a fixed function of each pixel's value, so of its position in a positional image."""

    def forward(self, features, targets=None):
        x = features["image"]
        logits = torch.stack([x[:, 0] * 0.7 - x[:, 1], torch.sin(x[:, 1] * 3.0) + x[:, 2] ** 2, x.sum(1)], 1)
        return logits, {}


def positional_model(settings: InferenceSettings) -> SemSegSegmentor:
    return SemSegSegmentor(
        backbone=PassThroughBackbone(),
        sem_seg_head=PositionalHead(),
        pixel_mean=[100.0, 100.0, 100.0],
        pixel_std=[50.0, 60.0, 70.0],
        test_inference=settings,
    ).eval()


def positional_image(height: int, width: int) -> torch.Tensor:
    """Pixel values that encode (row, column): a tile put in the wrong place shows."""
    y, x = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    return torch.stack([(x * 7) % 256, (y * 5) % 256, (x * y) % 256]).to(torch.uint8)


@pytest.mark.parametrize(
    ("size", "tile", "stride"), [(100, 32, 20), (64, 64, 48), (30, 64, 48), (97, 33, 33)]
)
def test_tiles_cover_the_side_and_end_at_the_border(size, tile, stride):
    starts = tile_starts(size, tile, stride)
    covered = np.zeros(size, dtype=bool)
    for s in starts:
        covered[s : s + tile] = True
    assert covered.all()
    assert starts[0] == 0 and min(starts[-1] + tile, size) == size
    assert all(0 < b - a <= stride for a, b in zip(starts, starts[1:]))


@pytest.mark.parametrize("blend", ["average", "gaussian"])
@pytest.mark.parametrize("batch_size", [1, 4])
def test_slide_is_seamless_on_a_positional_model(blend, batch_size):
    image = positional_image(100, 70)
    slide = InferenceSettings(mode="slide", tile_size=32, stride=20, blend=blend, batch_size=batch_size)
    out_slide = positional_model(slide)([{"image": image}])[0]["sem_seg"]
    out_whole = positional_model(InferenceSettings(mode="whole"))([{"image": image}])[0]["sem_seg"]
    # The known function of position, computed directly.
    mean, std = torch.tensor([100.0, 100.0, 100.0]), torch.tensor([50.0, 60.0, 70.0])
    x = (image.float() - mean[:, None, None]) / std[:, None, None]
    expected = PositionalHead()({"image": x[None]})[0][0]
    assert out_slide.shape == (3, 100, 70)
    torch.testing.assert_close(out_whole, expected)
    torch.testing.assert_close(out_slide, expected, atol=1e-5, rtol=1e-5)


def test_tiles_blend_by_the_chosen_weights():
    """Two overlapping tiles of a model whose logits say which tile they came from."""
    calls = []

    def run(tiles: torch.Tensor) -> torch.Tensor:
        calls.append(tiles.shape)
        return torch.full((tiles.shape[0], 1, *tiles.shape[-2:]), float(len(calls)))

    image = torch.zeros(1, 3, 8, 12)
    avg = sliding_window_logits(run, image, tile=8, stride=4)
    assert calls == [(1, 3, 8, 8), (1, 3, 8, 8)]
    torch.testing.assert_close(avg[0, 0, 0], torch.tensor([1.0] * 4 + [1.5] * 4 + [2.0] * 4))
    calls.clear()
    gauss = sliding_window_logits(run, image, tile=8, stride=4, blend="gaussian")[0, 0, 0]
    # Pixels of the overlap nearer the first tile's centre lean to its value, and symmetrically.
    assert torch.all(gauss[4:8] > 1) and torch.all(gauss[4:8] < 2)
    assert gauss[4] < 1.5 < gauss[7]
    torch.testing.assert_close(gauss[4:8], 3 - gauss[4:8].flip(0))


@pytest.mark.parametrize("name", ["unet", "fcn8s"])
def test_one_tile_covering_the_image_equals_whole(name):
    model = build(name).eval()
    image = torch.randint(0, 256, (3, 48, 40), dtype=torch.uint8)
    model.test_inference = InferenceSettings(mode="whole")
    whole = model([{"image": image, "height": 96, "width": 80}])[0]["sem_seg"]
    model.test_inference = InferenceSettings(mode="slide", tile_size=64, stride=64)
    slide = model([{"image": image, "height": 96, "width": 80}])[0]["sem_seg"]
    assert whole.shape == (2, 96, 80)
    torch.testing.assert_close(slide, whole)


def test_whole_at_the_test_size_equals_resize():
    model = build("unet").eval()
    image = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
    resize = model([{"image": image}])[0]["sem_seg"]
    whole = model.inference_with([{"image": image}], InferenceSettings(mode="whole"))[0]["sem_seg"]
    torch.testing.assert_close(whole, resize)


def test_scale_resizes_before_and_after():
    image = positional_image(40, 40)
    half = positional_model(InferenceSettings(mode="whole", scale=0.5))([{"image": image}])[0]["sem_seg"]
    assert half.shape == (3, 40, 40)
    # The logits were computed at 20x20: neighbouring rows of the result are interpolated.
    full = positional_model(InferenceSettings(mode="whole"))([{"image": image}])[0]["sem_seg"]
    assert not torch.allclose(half, full)


def test_defaults_keep_detectron2s_predictor_outputs():
    """TEST.INFERENCE_MODE "resize" and TEST.AUG off: Predictor == Detectron2's DefaultPredictor."""
    cfg = model_cfg("unet")
    cfg.MODEL.CHANNELS_LAST = False
    cfg.SOLVER.AMP.ENABLED = False
    assert cfg.TEST.INFERENCE_MODE == "resize" and not cfg.TEST.AUG.ENABLED
    ours, theirs = Predictor(cfg), DefaultPredictor(cfg)
    theirs.model.load_state_dict(ours.model.state_dict())
    image = np.random.default_rng(0).integers(0, 256, (100, 80, 3), dtype=np.uint8)
    assert torch.equal(ours(image)["sem_seg"], theirs(image)["sem_seg"])  # bit for bit


def test_predictor_modes_on_a_large_image():
    cfg = model_cfg(
        "unet", 0.0625, "TEST.INFERENCE_MODE", "slide", "TEST.SLIDING_WINDOW.TILE_SIZE", "64",
        "TEST.SLIDING_WINDOW.STRIDE", "48", "TEST.SLIDING_WINDOW.BATCH_SIZE", "3",
    )  # fmt: skip
    predictor = Predictor(cfg)
    image = np.random.default_rng(0).integers(0, 256, (150, 130, 3), dtype=np.uint8)
    slide = predictor(image)["sem_seg"]
    whole = predictor(image, inference=InferenceSettings(mode="whole"))["sem_seg"]
    resize = predictor(image, inference=InferenceSettings(mode="resize"))["sem_seg"]
    assert slide.shape == whole.shape == resize.shape == (2, 150, 130)
    assert not torch.allclose(slide, resize)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("TEST.INFERENCE_MODE", "tiles", "TEST.INFERENCE_MODE"),
        ("TEST.SLIDING_WINDOW.STRIDE", "600", "TEST.SLIDING_WINDOW.STRIDE"),
        ("TEST.SLIDING_WINDOW.BLEND", "max", "TEST.SLIDING_WINDOW.BLEND"),
        ("TEST.SLIDING_WINDOW.SCALE", "0.0", "TEST.SLIDING_WINDOW.SCALE"),
    ],
)
def test_bad_settings_name_the_key(key, value, message):
    with pytest.raises(ValueError, match=message):
        InferenceSettings.from_config(model_cfg("unet", 0.0625, key, value))
