"""Detectron2's semantic FPN head and Mask R-CNN mask head with a Dice term added to their loss.

Thin parts (a chair's legs, one or two pixels wide) are few pixels, so a per-pixel loss lets a
model drop them at little cost; a Dice term (Milletari et al., V-Net, 3DV 2016, Sec. 3) scores
the overlap of each mask as a whole, as the project's own heads do with
``MODEL.SEMSEG_HEADS.LOSS_TYPE: cross_entropy+dice``. Both heads keep Detectron2's loss, layers,
parameter names and inference; they only add ``loss_dice`` / ``loss_mask_dice`` (weighted by the
head's ``loss_weight``, as its own loss), so a checkpoint of either head loads into the other.
Select them by name: ``MODEL.SEM_SEG_HEAD.NAME: SemSegFPNDiceHead``,
``MODEL.ROI_MASK_HEAD.NAME: MaskRCNNDiceHead``.
"""

from __future__ import annotations

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec, cat
from detectron2.modeling import SEM_SEG_HEADS_REGISTRY
from detectron2.modeling.meta_arch.semantic_seg import SemSegFPNHead
from detectron2.modeling.roi_heads.mask_head import (
    ROI_MASK_HEAD_REGISTRY,
    MaskRCNNConvUpsampleHead,
    mask_rcnn_loss,
)
from detectron2.structures import Instances
from torch.nn import functional as F

from .losses import SemSegLoss
from .mask_scoring import rescore_by_maskness


@SEM_SEG_HEADS_REGISTRY.register()
class SemSegFPNDiceHead(SemSegFPNHead):
    """``SemSegFPNHead`` (Panoptic FPN's semantic branch) trained with cross-entropy + Dice, both
    from the project's ``SemSegLoss`` on the logits upsampled once, as Detectron2's loss does.
    ``dice_per_image`` (``MODEL.SEMSEG_HEADS.DICE_PER_IMAGE``) as in the project's heads."""

    @configurable
    def __init__(
        self,
        input_shape: dict[str, ShapeSpec],
        *,
        num_classes: int,
        dice_per_image: bool = False,
        **kwargs,
    ):
        super().__init__(input_shape, num_classes=num_classes, **kwargs)
        # The same cross-entropy as SemSegFPNHead.losses (unweighted, mean over labelled pixels).
        self.loss = SemSegLoss(
            num_classes=num_classes,
            ignore_value=self.ignore_value,
            loss_type="cross_entropy+dice",
            loss_weight=self.loss_weight,
            dice_per_image=dice_per_image,
        )

    @classmethod
    def from_config(cls, cfg, input_shape: dict[str, ShapeSpec]) -> dict:
        ret = super().from_config(cfg, input_shape)
        # A Detectron2 config without add_semseg_heads_config has no such key: the default.
        ret["dice_per_image"] = cfg.MODEL.get("SEMSEG_HEADS", {}).get("DICE_PER_IMAGE", False)
        return ret

    def losses(self, predictions: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = F.interpolate(
            predictions.float(), scale_factor=self.common_stride, mode="bilinear", align_corners=False
        )
        return self.loss(logits, targets)


def mask_dice_loss(
    pred_mask_logits: torch.Tensor, instances: list[Instances], eps: float = 1.0
) -> torch.Tensor:
    """``1 - mean Dice`` of each predicted mask (sigmoid) against its ground truth, the targets
    ``mask_rcnn_loss`` trains on: the instance's mask cropped to its proposal box and resized to
    the prediction's side (``BitMasks/PolygonMasks.crop_and_resize``)."""
    side = pred_mask_logits.size(2)
    gt_masks, gt_classes = [], []
    for per_image in instances:
        if len(per_image) == 0:
            continue
        gt_masks.append(per_image.gt_masks.crop_and_resize(per_image.proposal_boxes.tensor, side))
        gt_classes.append(per_image.gt_classes.to(dtype=torch.int64))
    if not gt_masks:
        return pred_mask_logits.sum() * 0
    targets = cat(gt_masks, dim=0).to(device=pred_mask_logits.device, dtype=torch.float32)
    if pred_mask_logits.size(1) == 1:  # class-agnostic
        logits = pred_mask_logits[:, 0]
    else:
        logits = pred_mask_logits[torch.arange(len(targets)), cat(gt_classes, dim=0)]
    probs = logits.float().sigmoid()
    intersection = (probs * targets).sum((1, 2))
    cardinality = probs.sum((1, 2)) + targets.sum((1, 2))
    return 1 - ((2 * intersection + eps) / (cardinality + eps)).mean()


@ROI_MASK_HEAD_REGISTRY.register()
class MaskRCNNDiceHead(MaskRCNNConvUpsampleHead):
    """Mask R-CNN's mask head (He et al., ICCV 2017, Sec. 3: per-pixel sigmoid + binary
    cross-entropy on the RoI's class) with a per-instance Dice term beside its loss.
    ``rescore_by_maskness`` (``MODEL.ROI_MASK_HEAD.RESCORE_BY_MASKNESS``): at inference each
    detection's score times its mask's maskness (``mask_scoring.py``), so mask AP ranks the
    masks by their quality as well as by their class."""

    @configurable
    def __init__(self, input_shape: ShapeSpec, *, rescore_by_maskness: bool = False, **kwargs):
        super().__init__(input_shape, **kwargs)
        self.rescore_by_maskness = rescore_by_maskness

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec) -> dict:
        ret = super().from_config(cfg, input_shape)
        # A Detectron2 config without add_semseg_heads_config has no such key: the default.
        ret["rescore_by_maskness"] = cfg.MODEL.ROI_MASK_HEAD.get("RESCORE_BY_MASKNESS", False)
        return ret

    def forward(self, x: torch.Tensor, instances: list[Instances]):
        if not self.training:
            instances = super().forward(x, instances)
            return rescore_by_maskness(instances) if self.rescore_by_maskness else instances
        x = self.layers(x)
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float()  # the losses in float32 under bf16 autocast too
            return {
                "loss_mask": mask_rcnn_loss(x, instances, self.vis_period) * self.loss_weight,
                "loss_mask_dice": mask_dice_loss(x, instances) * self.loss_weight,
            }
