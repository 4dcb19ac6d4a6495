"""projects/ChairSegments/receptive_field.py: the effective receptive field of an output cell."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from study_helpers import load_project_script
from torch import nn


@pytest.fixture(scope="module")
def erf():
    return load_project_script("receptive_field")


class _Backbone(nn.Module):
    size_divisibility = 0

    def __init__(self, kernel: int):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, kernel, padding=kernel // 2)

    def forward(self, x):
        return {"res": self.conv(x)}


class _Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.score = nn.Conv2d(4, 2, 1)

    def forward(self, features, targets=None):
        return self.score(features["res"]), {}


class _Model(nn.Module):
    """What ``pixels_to_logits`` reads of a SemanticSegmentor."""

    def __init__(self, kernel: int):
        super().__init__()
        torch.manual_seed(0)
        self.backbone = _Backbone(kernel)
        self.sem_seg_head = _Head()
        self.register_buffer("pixel_mean", torch.full((3, 1, 1), 128.0))
        self.register_buffer("pixel_std", torch.full((3, 1, 1), 64.0))


def test_radii_of_known_masses(erf):
    delta = np.zeros((9, 9))
    delta[4, 4] = 1.0
    assert erf.mass_radii(delta, (4.5, 4.5)) == {0.5: 0.0, 0.9: 0.0, 0.99: 0.0}
    ring = np.zeros((9, 9))
    ring[0, :] = 1.0  # all of it on the top row, 4 px from the centre pixel's centre
    ring /= ring.sum()
    assert erf.mass_radii(ring, (4.5, 4.5))[0.5] == 4.0
    flat = np.full((8, 8), 1 / 64)
    radii = erf.mass_radii(flat, (4.0, 4.0))
    assert radii[0.5] < radii[0.9] <= radii[0.99] <= 4.0


@pytest.mark.parametrize("kernel", [1, 5])
def test_gradient_mass_stays_within_the_theoretical_field(erf, kernel):
    image = torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8)
    res = erf.effective_receptive_field(_Model(kernel), [{"image": image}, {"image": image.flip(-1)}])
    mass = res["mass"]
    assert mass.sum() == pytest.approx(1.0)
    assert res["centre"] == [8.5, 8.5]  # the centre pixel (8, 8)
    half = kernel // 2
    outside = mass.copy()
    outside[8 - half : 9 + half, 8 - half : 9 + half] = 0
    assert outside.sum() == 0  # a k x k field: no gradient reaches past it
    assert res["radius"]["99%"] <= half and res["half_side"] == 8.0


def test_mass_moved_between_fields(erf):
    a = np.zeros((4, 4))
    a[0, 0] = 1.0
    b = np.zeros((4, 4))
    b[3, 3] = 1.0
    assert erf.mass_moved(a, a) == 0.0
    assert erf.mass_moved(a, b) == 1.0
    assert erf.mass_moved(a, (a + b) / 2) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="different sizes"):
        erf.mass_moved(a, np.zeros((3, 3)))


def test_a_score_that_ignores_the_input_is_an_error(erf):
    model = _Model(3)
    nn.init.zeros_(model.sem_seg_head.score.weight)
    with pytest.raises(ValueError, match="do not depend on the input"):
        erf.centre_pixel_gradient(model, torch.zeros(3, 8, 8))


def test_the_centre_pixel_is_the_image_s_not_the_padding_s(erf):
    model = _Model(1)
    model.backbone.size_divisibility = 16  # a 20-px image is padded to 32
    mass, centre = erf.centre_pixel_gradient(model, torch.randn(3, 20, 20))
    assert mass.shape == (20, 20)
    assert centre == (10.5, 10.5) and mass[10, 10] == pytest.approx(1.0)
