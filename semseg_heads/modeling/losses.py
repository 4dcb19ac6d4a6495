"""Segmentation losses selected by ``MODEL.SEMSEG_HEADS.LOSS_TYPE``: cross-entropy, Dice, the
Lovász-softmax, or cross-entropy with one of the other two."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .layers import crop_logits_to

LOSS_TYPES = ("cross_entropy", "dice", "cross_entropy+dice", "lovasz", "cross_entropy+lovasz")


def _labelled_onehot(
    targets: torch.Tensor, ignore_value: int, num_classes: int, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(one_hot, valid)``, both (N, C or 1, H, W): the targets one-hot, zero at ignored pixels."""
    valid = (targets != ignore_value)[:, None]
    onehot = F.one_hot(torch.where(valid[:, 0], targets, torch.zeros_like(targets)), num_classes)
    return onehot.permute(0, 3, 1, 2).to(dtype) * valid, valid


def _check_border_args(weight: float, sigma: float) -> None:
    if weight < 0 or sigma <= 0:
        raise ValueError(
            f"MODEL.SEMSEG_HEADS.BORDER_WEIGHT must be >= 0 and BORDER_SIGMA > 0, got {weight} and {sigma}"
        )


def border_weight_map(targets: torch.Tensor, ignore_value: int, weight: float, sigma: float) -> torch.Tensor:
    """Per-pixel weights ``1 + weight * exp(-d^2 / (2 sigma^2))``, (N, H, W), after U-Net's
    weight map (Ronneberger et al. 2015, Sec. 3, Eq. 2), which makes the network learn the thin
    background borders between touching cells.

    The paper's ``d1 + d2`` (distances to the two nearest cells) needs instances; here ``d`` is
    the chessboard distance to the nearest border between two labels, so both sides of every
    border, the thin parts of an object and the gaps between them, weigh more. Ignored pixels
    are not borders (the loss ignores them anyway); beyond ``3 sigma`` the weight is 1."""
    _check_border_args(weight, sigma)
    labels = targets[:, None].float()
    valid = targets[:, None] != ignore_value
    # A labelled pixel is on a border when its 3x3 neighbourhood holds another labelled class
    # (ignored pixels pool as -inf, as the padding does).
    high = F.max_pool2d(torch.where(valid, labels, -math.inf), 3, stride=1, padding=1)
    low = -F.max_pool2d(torch.where(valid, -labels, -math.inf), 3, stride=1, padding=1)
    reached = ((high != low) & valid).float()
    reach = int(math.ceil(3 * sigma))
    distance = torch.full_like(labels, float(reach + 1))
    for d in range(reach + 1):
        distance = torch.where((reached > 0) & (distance > d), float(d), distance)
        reached = F.max_pool2d(reached, 3, stride=1, padding=1)
    weights = 1 + weight * torch.exp(-(distance**2) / (2 * sigma**2)) * (distance <= reach)
    return weights[:, 0]


def soft_dice_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    ignore_value: int,
    class_weights: torch.Tensor | None = None,
    eps: float = 1.0,
    per_image: bool = False,
) -> torch.Tensor:
    """``1 - mean_c Dice_c`` of the softmax probabilities over all labelled pixels of the batch.

    Pixels equal to ``ignore_value`` take no part. ``eps`` smooths classes absent from both the
    prediction and the target (their Dice is 1). ``class_weights`` weights the per-class mean.
    ``per_image``: Dice of each class in each image, averaged over the images, the way the
    Chair Segments paper averages its per-image IoU (Sec. 4), so an image weighs the same
    whatever its object's size; by default the batch's pixels are pooled.
    """
    onehot, valid = _labelled_onehot(targets, ignore_value, logits.shape[1], torch.float32)
    probs = F.softmax(logits.float(), dim=1) * valid
    dims = (2, 3) if per_image else (0, 2, 3)
    intersection = (probs * onehot).sum(dims)
    cardinality = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * intersection + eps) / (cardinality + eps)
    if per_image:
        dice = dice.mean(0)
    if class_weights is None:
        return 1 - dice.mean()
    return 1 - (dice * class_weights).sum() / class_weights.sum()


def lovasz_softmax_loss(
    logits: torch.Tensor, targets: torch.Tensor, ignore_value: int, per_image: bool = False
) -> torch.Tensor:
    """The Lovász-softmax loss (Berman, Rannen Triki, Blaschko, CVPR 2018, Sec. 3.2 / Alg. 1): a
    convex surrogate of ``1 - IoU_c`` built from the softmax errors ``|1[y = c] - p_c|``, averaged
    over the classes present in the ground truth. For hard (0/1) probabilities it equals the
    Jaccard loss. ``per_image``: one loss per image, averaged (the paper's per-image IoU);
    by default the batch's pixels are pooled."""
    probs = F.softmax(logits.float(), dim=1).flatten(2)  # (N, C, pixels)
    fg, valid = _labelled_onehot(targets, ignore_value, logits.shape[1], probs.dtype)
    fg, valid = fg.flatten(2), valid.flatten(2)
    # Ignored pixels sort last (error -1) and weigh nothing; each image's prefixes stay its own.
    errors = torch.where(valid, (fg - probs).abs(), -1.0)
    if not per_image:
        errors, fg = errors.movedim(0, 1).flatten(1)[None], fg.movedim(0, 1).flatten(1)[None]
    errors, order = errors.sort(dim=-1, descending=True)
    fg = fg.gather(-1, order)
    # The Lovász extension's gradient (Eq. 8): each sorted prefix's Jaccard loss minus the last.
    total = fg.sum(-1, keepdim=True)
    jaccard = 1 - (total - fg.cumsum(-1)) / (total + (1 - fg).cumsum(-1))
    grad = torch.diff(jaccard, dim=-1, prepend=torch.zeros_like(jaccard[..., :1]))
    per_class = (errors.clamp(min=0) * grad).sum(-1)  # (images or 1, C)
    present = (total[..., 0] > 0).to(per_class.dtype)
    counted = present.sum(-1)
    per_group = (per_class * present).sum(-1) / counted.clamp(min=1)
    return (per_group * (counted > 0)).sum() / (counted > 0).sum().clamp(min=1)


class SemSegLoss(nn.Module):
    """Softmax cross-entropy (Detectron2's ``loss_sem_seg``), Dice (``loss_dice``), Lovász-softmax
    (``loss_lovasz``), or cross-entropy with one of the other two.

    Logits may be larger than the targets (padded inputs, FCN's crop); they are cropped from
    pixel 0 to the target size. ``loss_weight`` is ``MODEL.SEM_SEG_HEAD.LOSS_WEIGHT``;
    ``dice_per_image`` (``MODEL.SEMSEG_HEADS.DICE_PER_IMAGE``) averages the Dice or Lovász term
    over images instead of pooling the batch's pixels (``soft_dice_loss``, ``lovasz_softmax_loss``).
    """

    def __init__(
        self,
        *,
        num_classes: int,
        ignore_value: int = 255,
        loss_type: str = "cross_entropy",
        class_weights: Sequence[float] = (),
        loss_weight: float = 1.0,
        dice_per_image: bool = False,
        border_weight: float = 0.0,
        border_sigma: float = 2.0,
    ):
        super().__init__()
        if loss_type not in LOSS_TYPES:
            raise ValueError(f"MODEL.SEMSEG_HEADS.LOSS_TYPE must be one of {LOSS_TYPES}, got {loss_type!r}")
        class_weights = list(class_weights)
        if class_weights and len(class_weights) != num_classes:
            raise ValueError(
                f"MODEL.SEMSEG_HEADS.CLASS_WEIGHTS has {len(class_weights)} values; "
                f"expected one per class ({num_classes}) or none"
            )
        if any(w < 0 for w in class_weights) or (class_weights and sum(class_weights) <= 0):
            raise ValueError(
                f"MODEL.SEMSEG_HEADS.CLASS_WEIGHTS must be >= 0 with a positive sum: {class_weights}"
            )
        self.num_classes = num_classes
        self.ignore_value = ignore_value
        self.loss_type = loss_type
        self.loss_weight = loss_weight
        self.dice_per_image = dice_per_image
        _check_border_args(border_weight, border_sigma)
        self.border_weight = border_weight
        self.border_sigma = border_sigma
        weights = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        # Not persistent: a loss setting is config, not a learned state to checkpoint.
        self.register_buffer("class_weights", weights, persistent=False)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        if targets is None:
            raise ValueError("training needs 'sem_seg' targets in every input dict")
        # Losses in float32 under mixed precision too (CPU autocast keeps softmax in bf16).
        with torch.autocast(device_type=logits.device.type, enabled=False):
            return self._losses(crop_logits_to(logits, targets.shape[-2:]).float(), targets)

    def _losses(self, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        if not bool((targets != self.ignore_value).any()):
            # Every pixel ignored: a zero that keeps the graph (cross-entropy's mean would be NaN).
            zero = logits.sum() * 0.0
            keys = {
                "cross_entropy": ["loss_sem_seg"],
                "dice": ["loss_dice"],
                "lovasz": ["loss_lovasz"],
                "cross_entropy+lovasz": ["loss_sem_seg", "loss_lovasz"],
            }.get(self.loss_type, ["loss_sem_seg", "loss_dice"])
            return {k: zero for k in keys}
        losses = {}
        if self.loss_type.startswith("cross_entropy"):
            losses["loss_sem_seg"] = self.loss_weight * self._cross_entropy(logits, targets)
        if self.loss_type in ("dice", "cross_entropy+dice"):
            losses["loss_dice"] = self.loss_weight * soft_dice_loss(
                logits, targets, self.ignore_value, self.class_weights, per_image=self.dice_per_image
            )
        if self.loss_type in ("lovasz", "cross_entropy+lovasz"):
            losses["loss_lovasz"] = self.loss_weight * lovasz_softmax_loss(
                logits, targets, self.ignore_value, per_image=self.dice_per_image
            )
        return losses

    def _cross_entropy(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if not self.border_weight:
            return F.cross_entropy(
                logits, targets, weight=self.class_weights, ignore_index=self.ignore_value, reduction="mean"
            )
        # Normalised by the weights' sum, as PyTorch's class-weighted mean, so the term keeps
        # its scale beside the Dice term.
        weights = border_weight_map(targets, self.ignore_value, self.border_weight, self.border_sigma)
        weights = weights * (targets != self.ignore_value)
        if self.class_weights is not None:
            weights = weights * self.class_weights[torch.where(targets == self.ignore_value, 0, targets)]
        # Unweighted per pixel: the class weights are in ``weights`` already.
        per_pixel = F.cross_entropy(logits, targets, ignore_index=self.ignore_value, reduction="none")
        return (per_pixel * weights).sum() / weights.sum().clamp(min=1e-12)

    def extra_repr(self) -> str:
        border = f", border_weight={self.border_weight}, border_sigma={self.border_sigma}"
        return (
            f"loss_type={self.loss_type}, ignore_value={self.ignore_value}, "
            f"loss_weight={self.loss_weight}, dice_per_image={self.dice_per_image}"
            + (border if self.border_weight else "")
        )
