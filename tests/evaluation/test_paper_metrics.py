"""The paper's metrics on hand-made masks, against numbers worked out by hand."""

import math

import numpy as np
import pytest

from semseg_heads.evaluation import BinarySegmentationScores, count_pixels


def mask(rows):
    return np.array([[c == "#" for c in r] for r in rows], dtype=bool)


# 4x4: prediction 3 pixels, ground truth 4 pixels, 2 shared.
PRED = mask(["##..", "#...", "....", "...."])
GT = mask([".#..", "##..", ".#..", "...."])


def test_counts_of_one_image():
    c = count_pixels(PRED, GT)
    # union = 3 + 4 - 2 = 5; wrong pixels: 1 false positive + 2 false negatives.
    assert (c.intersection, c.pred_area, c.gt_area, c.union) == (2, 3, 4, 5)
    assert (c.correct, c.total) == (13, 16)
    assert c.iou == pytest.approx(2 / 5)
    assert c.dice == pytest.approx(2 * 2 / (3 + 4))


def test_ignored_pixels_count_nowhere():
    valid = np.ones((4, 4), dtype=bool)
    valid[1, 0] = False  # a ground-truth pixel the prediction also has
    valid[3, 3] = False  # a true-negative pixel
    c = count_pixels(PRED, GT, valid)
    assert (c.intersection, c.pred_area, c.gt_area, c.total, c.correct) == (1, 2, 3, 14, 11)
    assert c.iou == pytest.approx(1 / 4)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        count_pixels(PRED, GT[:3])


def test_summary_averages_iou_dice_over_images_with_more_than_5_object_pixels():
    scores = BinarySegmentationScores()
    # Image A (10x10): gt 6 pixels (scored), prediction 4 of them + 2 others.
    gt_a = np.zeros((10, 10), bool)
    gt_a[0, :6] = True
    pred_a = np.zeros((10, 10), bool)
    pred_a[0, :4] = True
    pred_a[5, :2] = True
    # Image B (10x10): gt exactly 5 pixels -> not scored for IoU/Dice; predicted perfectly.
    gt_b = np.zeros((10, 10), bool)
    gt_b[3, :5] = True
    # Image C (10x10): empty gt, 3 false-positive pixels -> not scored; lowers Prec. only.
    pred_c = np.zeros((10, 10), bool)
    pred_c[9, :3] = True
    scores.add(pred_a, gt_a)
    scores.add(gt_b.copy(), gt_b)
    scores.add(pred_c, np.zeros((10, 10), bool))
    s = scores.summary()
    # Binary pixel accuracy over the three images: wrong pixels A: 2 fn + 2 fp, B: 0, C: 3.
    assert sum(c.correct for c in scores.images) == 293 and sum(c.total for c in scores.images) == 300
    # IoU / Dice from A only: inter 4, union 6 + 6 - 4 = 8; Dice 8 / 12.
    assert s["IoU"] == pytest.approx(100 * 4 / 8)
    assert s["Dice"] == pytest.approx(100 * 8 / 12)
    assert (s["num_images"], s["num_scored_images"]) == (3, 1)


def test_summary_with_no_scored_image_is_nan_not_zero():
    scores = BinarySegmentationScores()
    scores.add(np.zeros((3, 3), bool), np.zeros((3, 3), bool))
    s = scores.summary()
    assert math.isnan(s["IoU"]) and math.isnan(s["Dice"])
    assert (s["num_images"], s["num_scored_images"]) == (1, 0)


def test_min_object_pixels_is_configurable():
    gt = np.zeros((4, 4), bool)
    gt[0, :3] = True
    scores = BinarySegmentationScores(min_object_pixels=2)
    scores.add(gt, gt)
    assert scores.summary()["IoU"] == 100.0
