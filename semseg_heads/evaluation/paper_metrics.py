"""The Chair Segments paper's metrics (Pinto-Alva et al., arXiv:2012.01250, Sec. 4).

As the paper's reference code defines them, for a binary object/background map:

* **Prec.**: pixel accuracy over all (non-ignored) pixels of the whole evaluation set, which is
  ``SemSegEvaluator``'s ``pACC`` for a two-class dataset (the evaluator takes it from there);
* **IoU** and **Dice**: computed per image, then averaged over the images whose ground truth
  has more than 5 object pixels (images with a near-empty ground truth have no meaningful
  per-image overlap, so the reference code leaves them out): ``BinarySegmentationScores``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The reference code scores IoU/Dice only on images whose ground truth has MORE than this
#: many object pixels.
MIN_OBJECT_PIXELS = 5


@dataclass(frozen=True)
class ImageCounts:
    """Pixel counts of one image; every metric is a function of these."""

    correct: int  # pixels whose predicted label equals the ground truth
    total: int  # non-ignored pixels
    intersection: int  # predicted object AND ground-truth object
    pred_area: int  # predicted object pixels (non-ignored)
    gt_area: int  # ground-truth object pixels

    @property
    def union(self) -> int:
        return self.pred_area + self.gt_area - self.intersection

    @property
    def iou(self) -> float:
        """Per-image IoU of the object class; nan when prediction and ground truth are empty."""
        return self.intersection / self.union if self.union > 0 else float("nan")

    @property
    def dice(self) -> float:
        """Per-image Dice (F1) of the object class; nan when both are empty."""
        denom = self.pred_area + self.gt_area
        return 2.0 * self.intersection / denom if denom > 0 else float("nan")


def count_pixels(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None) -> ImageCounts:
    """Counts for one image from boolean object masks ``pred`` and ``gt`` of the same shape.

    ``valid`` (optional, boolean) marks the pixels to score; ignored pixels count nowhere.
    """
    pred = np.asarray(pred, dtype=bool)
    gt = np.asarray(gt, dtype=bool)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} != ground-truth shape {gt.shape}")
    if valid is None:
        valid = np.ones(gt.shape, dtype=bool)
    else:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != gt.shape:
            raise ValueError(f"valid-mask shape {valid.shape} != ground-truth shape {gt.shape}")
    pred = pred & valid
    gt = gt & valid
    return ImageCounts(
        correct=int(np.count_nonzero((pred == gt) & valid)),
        total=int(np.count_nonzero(valid)),
        intersection=int(np.count_nonzero(pred & gt)),
        pred_area=int(np.count_nonzero(pred)),
        gt_area=int(np.count_nonzero(gt)),
    )


class BinarySegmentationScores:
    """Accumulates ``ImageCounts`` and summarises them as the paper's table does.

    Args:
        min_object_pixels: IoU/Dice average only over images with more ground-truth object
            pixels than this (5 in the reference code).
    """

    def __init__(self, min_object_pixels: int = MIN_OBJECT_PIXELS):
        self.min_object_pixels = min_object_pixels
        self.images: list[ImageCounts] = []

    def add(self, pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None) -> ImageCounts:
        counts = count_pixels(pred, gt, valid)
        self.images.append(counts)
        return counts

    def extend(self, counts: list[ImageCounts]) -> None:
        self.images.extend(counts)

    def summary(self) -> dict[str, float]:
        """The paper's per-image ``IoU`` and ``Dice`` (in %) and the image counts.

        A metric with nothing to average over is nan (e.g. IoU when no image has an object).
        """
        scored = [c for c in self.images if c.gt_area > self.min_object_pixels]
        iou = float(np.mean([c.iou for c in scored])) if scored else float("nan")
        dice = float(np.mean([c.dice for c in scored])) if scored else float("nan")
        return {
            "IoU": 100.0 * iou,
            "Dice": 100.0 * dice,
            "num_images": len(self.images),
            "num_scored_images": len(scored),
        }
