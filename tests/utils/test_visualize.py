"""semseg_heads.utils.visualize: the one place predictions are drawn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from detectron2.data import MetadataCatalog

from semseg_heads.utils.visualize import (
    FALSE_CHAIR,
    HIT,
    MISSED_CHAIR,
    binary_errors,
    draw_predictions,
    min_side_scale,
    panel_grid,
)


def test_binary_errors_colours_each_outcome() -> None:
    pred = np.array([[True, True], [False, False]])
    gt = np.array([[True, False], [True, False]])
    rgb = binary_errors(pred, gt)
    assert [tuple(rgb[0, 0]), tuple(rgb[0, 1]), tuple(rgb[1, 0]), tuple(rgb[1, 1])] == [
        HIT,
        FALSE_CHAIR,
        MISSED_CHAIR,
        (0, 0, 0),
    ]


def test_panel_grid_geometry_captions_and_missing_panels() -> None:
    red = np.zeros((8, 16, 3), np.uint8)
    red[..., 0] = 255
    rows = [[(red, "a"), (None, "b")], [(red, ""), (red, "")]]
    grid = np.asarray(panel_grid(rows, cell=32, pad=4, header=18))
    assert grid.shape == (18 + 2 * (32 + 4) + 4, 2 * (32 + 4) + 4, 3)
    # The 16x8 panel is scaled to fit the 32-pixel cell (32x16), top-left; the None panel stays grey.
    assert tuple(grid[18, 4]) == (255, 0, 0) and tuple(grid[18 + 15, 4 + 31]) == (255, 0, 0)
    assert tuple(grid[18 + 16, 4]) == (128, 128, 128)
    assert tuple(grid[18 + 5, 4 + 36 + 5]) == (128, 128, 128)
    # Row 2 has no captions: it starts right after row 1.
    assert tuple(grid[18 + 36, 4]) == (255, 0, 0)


def test_draw_predictions_semantic_overlay_and_unknown_output() -> None:
    meta = MetadataCatalog.get("visualize_test_binary")
    meta.set(stuff_classes=["background", "chair"], stuff_colors=[(0, 0, 0), (255, 0, 0)])
    image = np.full((16, 16, 3), 200, np.uint8)
    logits = torch.zeros(2, 16, 16)
    logits[1, 4:12, 4:12] = 1.0
    scale = min_side_scale(image.shape, 64)
    drawn = draw_predictions(image, {"sem_seg": logits}, meta, scale=scale)
    assert scale == 4.0 and drawn.shape == (64, 64, 3)
    assert not np.array_equal(drawn[32, 32], drawn[2, 2])  # the chair is coloured, the corner not
    with pytest.raises(ValueError, match="keys \\['panoptic_seg'\\]"):
        draw_predictions(image, {"panoptic_seg": None}, meta)
