"""projects/ChairSegments/stride_ceiling.py: the IoU a stride-s output can reach at best."""

from __future__ import annotations

import numpy as np
import pytest
from study_helpers import chair_label_records, load_project_script


@pytest.fixture(scope="module")
def ceiling():
    return load_project_script("stride_ceiling")


def test_cell_aligned_square_survives_and_thin_line_vanishes(ceiling):
    gt = np.zeros((32, 32), bool)
    gt[8:16, 4:12] = True  # aligned to 4-px cells: each cell all chair or all background
    assert np.array_equal(ceiling.stride_limited(gt, 1), gt)
    up = ceiling.stride_limited(gt, 4)
    # Bilinear upsampling of the cell averages keeps the square's edges and rounds its corners.
    assert not (up & ~gt).any() and up[9:15, 5:11].all()
    assert (up & gt).sum() / gt.sum() > 0.9
    leg = np.zeros((32, 32), bool)
    leg[:, 5] = True  # a one-pixel leg covers a quarter of its stride-4 cells
    assert not ceiling.stride_limited(leg, 4).any()
    assert np.array_equal(ceiling.stride_limited(leg, 1), leg)


def test_ceiling_falls_with_stride_on_label_maps(ceiling, tmp_path):
    records = chair_label_records(tmp_path, seed=0)
    res = ceiling.stride_ceilings(records, [1, 2, 8, 32])
    ious = [res[s]["IoU"] for s in (1, 2, 8, 32)]
    assert ious[0] == pytest.approx(100.0)
    assert ious[0] > ious[1] > ious[2] > ious[3]
    assert res[8]["num_scored_images"] == 3


def test_upscaled_input_lowers_the_stride_in_original_pixels(ceiling, tmp_path):
    records = chair_label_records(tmp_path, seed=1)
    at = {k: ceiling.stride_ceilings(records, [8], scale=k)[8]["IoU"] for k in (1, 2, 3)}
    assert at[1] < at[2] < at[3]
    # Stride 8 on a 2x input sees 4-px cells of the original, as stride 4 at 1x does.
    assert at[2] == pytest.approx(ceiling.stride_ceilings(records, [4])[4]["IoU"], abs=2.0)
    with pytest.raises(ValueError, match="scale"):
        ceiling.stride_limited(np.zeros((8, 8), bool), 4, scale=0)
