"""TEST.AUG for semantic models (SemanticSegmentorWithTTA): the identity augmentation is plain
inference, flips are undone, and it runs in the Trainer's evaluation and in Predictor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from modeling_utils import REPO, build, model_cfg
from test_sliding_window import positional_image, positional_model

from semseg_heads.engine import Predictor
from semseg_heads.modeling import InferenceSettings, SemanticSegmentorWithTTA


def tta_cfg(min_sizes: str, flip: bool):
    return model_cfg("unet", 0.0625, "TEST.AUG.ENABLED", "True", "TEST.AUG.MIN_SIZES", min_sizes,
                     "TEST.AUG.FLIP", str(flip))  # fmt: skip


def symmetric_image(height: int = 64, width: int = 64) -> torch.Tensor:
    left = torch.randint(0, 256, (3, height, width // 2), generator=torch.Generator().manual_seed(0))
    return torch.cat([left, left.flip(-1)], -1).to(torch.uint8)


def test_identity_augmentation_is_plain_inference():
    model = build("unet").eval()
    image = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
    plain = model([{"image": image}])[0]["sem_seg"]
    tta = SemanticSegmentorWithTTA(tta_cfg("(0,)", False), model)([{"image": image}])[0]["sem_seg"]
    torch.testing.assert_close(tta, plain.softmax(0))


def test_flips_are_undone():
    """A model that commutes with flipping (pointwise) gives the same with and without the flip,
    on an image that is not symmetric: a flipped prediction left flipped would differ."""
    model = positional_model(InferenceSettings())
    image = positional_image(40, 56)
    without = SemanticSegmentorWithTTA(tta_cfg("(0,)", False), model)([{"image": image}])[0]["sem_seg"]
    with_flip = SemanticSegmentorWithTTA(tta_cfg("(0,)", True), model)([{"image": image}])[0]["sem_seg"]
    torch.testing.assert_close(with_flip, without)


def test_flip_of_a_flip_symmetric_input():
    """On a mirror-symmetric image the flipped view is the image itself: flip TTA is the mean of
    the plain prediction and its mirror, so it comes out mirror-symmetric."""
    model = build("unet").eval()
    image = symmetric_image()
    plain = model([{"image": image}])[0]["sem_seg"].softmax(0)
    out = SemanticSegmentorWithTTA(tta_cfg("(0,)", True), model)([{"image": image}])[0]["sem_seg"]
    torch.testing.assert_close(out, (plain + plain.flip(-1)) / 2)
    torch.testing.assert_close(out, out.flip(-1))


def test_multi_scale_comes_back_at_the_input_size():
    model = build("fcn8s").eval()
    image = torch.randint(0, 256, (3, 48, 64), dtype=torch.uint8)
    tta = SemanticSegmentorWithTTA(tta_cfg("(32, 48, 96)", True), model)
    out = tta([{"image": image, "height": 96, "width": 128, "sem_seg": torch.zeros(48, 64).long()}])[0]
    assert out["sem_seg"].shape == (2, 96, 128)
    torch.testing.assert_close(out["sem_seg"].sum(0), torch.ones(96, 128))


def test_predictor_with_tta():
    cfg = tta_cfg("(48, 64)", True)
    predictor = Predictor(cfg)
    out = predictor(np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8))["sem_seg"]
    assert out.shape == (2, 64, 80)
    with pytest.raises(ValueError, match="TEST.AUG.ENABLED"):
        predictor(np.zeros((64, 64, 3), np.uint8), inference=InferenceSettings(mode="whole"))


def test_instance_models_are_refused():
    from detectron2.modeling import build_model

    from semseg_heads.config import get_semseg_heads_cfg

    cfg = get_semseg_heads_cfg(
        str(REPO / "configs/ChairSegments/scratch/mask_rcnn_R_18_FPN.yaml"), ["MODEL.DEVICE", "cpu"]
    )
    with pytest.raises(TypeError, match="SemanticSegmentor"):
        SemanticSegmentorWithTTA(cfg, build_model(cfg))
