"""``SemSegFPNDiceHead`` and ``MaskRCNNDiceHead``: Detectron2's heads, their loss and inference
unchanged, with a Dice term beside it."""

from __future__ import annotations

import torch
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling.meta_arch.semantic_seg import SemSegFPNHead
from detectron2.modeling.roi_heads.mask_head import MaskRCNNConvUpsampleHead, mask_rcnn_loss
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage
from torch.nn import functional as F

from semseg_heads import add_semseg_heads_config
from semseg_heads.modeling import (
    MaskRCNNDiceHead,
    SemSegFPNDiceHead,
    mask_dice_loss,
    maskness,
    rescore_by_maskness,
    soft_dice_loss,
)


def _instances(n: int = 3, size: int = 32) -> list[Instances]:
    """One image with ``n`` square masks, each with its own box as the proposal."""
    masks = torch.zeros(n, size, size, dtype=torch.bool)
    boxes = []
    for i in range(n):
        lo, hi = 2 + 3 * i, 20 + 3 * i
        masks[i, lo:hi, lo + 2 : hi - 2] = True  # a mask narrower than its box
        boxes.append([lo, lo, hi, hi])
    inst = Instances((size, size))
    inst.gt_masks = BitMasks(masks)
    inst.gt_classes = torch.zeros(n, dtype=torch.int64)
    inst.proposal_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
    return [inst]


def test_mask_dice_loss_is_zero_for_the_targets_and_matches_a_hand_computation() -> None:
    instances = _instances()
    targets = instances[0].gt_masks.crop_and_resize(instances[0].proposal_boxes.tensor, 14).float()
    perfect = (targets * 2 - 1)[:, None] * 50.0
    assert mask_dice_loss(perfect, instances).item() < 1e-3

    logits = torch.randn(3, 1, 14, 14, generator=torch.Generator().manual_seed(0))
    p = logits[:, 0].sigmoid()
    expected = 1 - ((2 * (p * targets).sum((1, 2)) + 1) / (p.sum((1, 2)) + targets.sum((1, 2)) + 1)).mean()
    torch.testing.assert_close(mask_dice_loss(logits, instances), expected)


def _mask_heads() -> tuple[MaskRCNNConvUpsampleHead, MaskRCNNDiceHead]:
    args = dict(input_shape=ShapeSpec(channels=8, width=7, height=7), num_classes=1, conv_dims=[8, 8])
    torch.manual_seed(0)
    plain = MaskRCNNConvUpsampleHead(**args)
    dice = MaskRCNNDiceHead(**args)
    dice.load_state_dict(plain.state_dict())  # same parameter names
    return plain, dice


def test_mask_head_adds_dice_to_detectron2s_loss_and_keeps_its_inference() -> None:
    plain, dice = _mask_heads()
    x = torch.randn(3, 8, 7, 7, generator=torch.Generator().manual_seed(1))
    with EventStorage():
        losses = dice.train()(x, _instances())
        expected_bce = mask_rcnn_loss(plain.train().layers(x), _instances())
    assert set(losses) == {"loss_mask", "loss_mask_dice"}
    torch.testing.assert_close(losses["loss_mask"], expected_bce)
    torch.testing.assert_close(losses["loss_mask_dice"], mask_dice_loss(plain.layers(x), _instances()))
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in dice.parameters())

    def detections() -> list[Instances]:
        inst = Instances((32, 32))
        inst.pred_classes = torch.zeros(3, dtype=torch.int64)
        return [inst]

    with torch.no_grad():
        ours = dice.eval()(x, detections())[0].pred_masks
        theirs = plain.eval()(x, detections())[0].pred_masks
    torch.testing.assert_close(ours, theirs)


def test_semantic_fpn_head_adds_dice_to_detectron2s_cross_entropy() -> None:
    args = dict(
        input_shape={"p2": ShapeSpec(channels=8, stride=4), "p3": ShapeSpec(channels=8, stride=8)},
        num_classes=2,
        conv_dims=8,
        common_stride=4,
        norm="",
        ignore_value=255,
        loss_weight=0.5,
    )
    torch.manual_seed(0)
    plain = SemSegFPNHead(**args)
    dice = SemSegFPNDiceHead(**args)
    dice.load_state_dict(plain.state_dict())
    g = torch.Generator().manual_seed(2)
    features = {"p2": torch.randn(2, 8, 8, 8, generator=g), "p3": torch.randn(2, 8, 4, 4, generator=g)}
    targets = torch.randint(0, 2, (2, 32, 32), generator=g)
    targets[0, :4] = 255
    _, losses = dice.train()(features, targets)
    _, expected = plain.train()(features, targets)
    assert set(losses) == {"loss_sem_seg", "loss_dice"}
    torch.testing.assert_close(losses["loss_sem_seg"], expected["loss_sem_seg"])
    logits = F.interpolate(plain.layers(features), scale_factor=4, mode="bilinear", align_corners=False)
    torch.testing.assert_close(losses["loss_dice"], 0.5 * soft_dice_loss(logits, targets, 255))


def test_semantic_fpn_head_reads_dice_per_image_from_the_config() -> None:
    cfg = get_cfg()
    add_semseg_heads_config(cfg)
    cfg.MODEL.SEM_SEG_HEAD.IN_FEATURES = ["p2"]
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 2
    cfg.MODEL.SEMSEG_HEADS.DICE_PER_IMAGE = True
    head = SemSegFPNDiceHead(cfg, {"p2": ShapeSpec(channels=8, stride=4)})
    assert head.loss.dice_per_image
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 2, 16, 16, generator=g)
    targets = torch.randint(0, 2, (2, 16, 16), generator=g)
    per_image = soft_dice_loss(logits, targets, 255, per_image=True)
    assert not torch.allclose(per_image, soft_dice_loss(logits, targets, 255))
    torch.testing.assert_close(head.loss(logits, targets)["loss_dice"], per_image)


def test_semantic_fpn_head_builds_from_detectron2s_own_config() -> None:
    cfg = get_cfg()  # no add_semseg_heads_config: no MODEL.SEMSEG_HEADS
    cfg.MODEL.SEM_SEG_HEAD.IN_FEATURES = ["p2"]
    head = SemSegFPNDiceHead(cfg, {"p2": ShapeSpec(channels=8, stride=4)})
    assert not head.loss.dice_per_image


def test_maskness_is_the_mean_probability_over_the_kept_pixels() -> None:
    probs = torch.zeros(3, 1, 2, 2)
    probs[0, 0] = torch.tensor([[0.9, 0.7], [0.2, 0.5]])  # kept: 0.9, 0.7 (0.5 is not above)
    probs[1, 0] = 1.0
    # probs[2]: nothing above 0.5, an empty mask: 0
    torch.testing.assert_close(maskness(probs), torch.tensor([0.8, 1.0, 0.0]))


def test_mask_head_rescores_by_maskness_only_when_asked() -> None:
    plain, dice = _mask_heads()
    x = torch.randn(3, 8, 7, 7, generator=torch.Generator().manual_seed(2))

    def detections() -> list[Instances]:
        inst = Instances((32, 32))
        inst.pred_classes = torch.zeros(3, dtype=torch.int64)
        inst.scores = torch.tensor([0.9, 0.6, 0.3])
        return [inst]

    with torch.no_grad():
        kept = dice.eval()(x, detections())[0]
        dice.rescore_by_maskness = True
        rescored = dice(x, detections())[0]
    torch.testing.assert_close(kept.scores, torch.tensor([0.9, 0.6, 0.3]))
    expected = torch.tensor([0.9, 0.6, 0.3]) * maskness(rescored.pred_masks)
    torch.testing.assert_close(rescored.scores, expected)
    torch.testing.assert_close(rescored.pred_masks, kept.pred_masks)
    bf16 = Instances((4, 4), scores=torch.tensor([0.8]).bfloat16(), pred_masks=torch.full((1, 1, 2, 2), 0.7))
    assert rescore_by_maskness([bf16])[0].scores.dtype == torch.float32  # not rounded to bf16
    empty = Instances((4, 4), scores=torch.zeros(0), pred_masks=torch.zeros(0, 1, 7, 7))
    assert len(rescore_by_maskness([empty])[0]) == 0  # an image without detections


def test_mask_head_reads_rescore_by_maskness_from_the_config() -> None:
    cfg = add_semseg_heads_config(get_cfg())
    cfg.MODEL.ROI_MASK_HEAD.RESCORE_BY_MASKNESS = True
    shape = ShapeSpec(channels=8, width=7, height=7)
    assert MaskRCNNDiceHead(cfg, shape).rescore_by_maskness is True
    assert MaskRCNNDiceHead(get_cfg(), shape).rescore_by_maskness is False  # Detectron2's own config
