"""A mask's score from its own quality: Mask R-CNN ranks its masks by the box classifier's
score, which says little of how well a mask traces its object, while mask AP ranks by it.

Mask Scoring R-CNN (Huang et al., CVPR 2019) learns a MaskIoU head for this; the training-free
"maskness" of SOLOv2 (Wang et al., NeurIPS 2020) scores a mask by its own confidence, the mean
probability over the pixels it keeps (probability > 0.5), and multiplies the class score by it.
That is what ``rescore_by_maskness`` does, for the mask heads that enable it
(``MODEL.ROI_MASK_HEAD.RESCORE_BY_MASKNESS``).
"""

from __future__ import annotations

import torch
from detectron2.structures import Instances

__all__ = ["maskness", "rescore_by_maskness"]


def maskness(mask_probs: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Mean probability over each mask's pixels above ``threshold`` (0 for an empty mask), for
    probabilities of shape (N, 1, M, M) or (N, M, M)."""
    p = mask_probs.float().flatten(1)
    keep = p > threshold
    return (p * keep).sum(1) / keep.sum(1).clamp(min=1)


def rescore_by_maskness(instances: list[Instances]) -> list[Instances]:
    """Multiply each detection's ``scores`` by the maskness of its ``pred_masks`` (the mask
    head's probabilities, before pasting), in place; returns ``instances``. The product is
    float32: under bf16 autocast, rounding it to bf16 (8 bits of mantissa) would tie masks
    whose scores differ in the third digit and cost AP's ranking what the rescoring gains."""
    for per_image in instances:
        per_image.scores = per_image.scores.float() * maskness(per_image.pred_masks)
    return instances
