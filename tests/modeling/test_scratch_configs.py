"""configs/ChairSegments/scratch/: every config builds at a tiny width and one step of its own
recipe (optimizer + warm-up/cosine schedule) gives a finite loss; a scratch U-Net's loss falls
on a fixed batch; every semantic config has a scratch variant."""

from __future__ import annotations

import math

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.solver import build_lr_scheduler
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage
from modeling_utils import CONFIG_DIR, MODEL_CONFIGS, SMALL_WIDTH, rectangles_batch

from semseg_heads.config import get_semseg_heads_cfg
from semseg_heads.engine import build_optimizer

SCRATCH_DIR = CONFIG_DIR / "scratch"
SCRATCH_CONFIGS = tuple(sorted(p.stem for p in SCRATCH_DIR.glob("*.yaml") if not p.stem.startswith("Base-")))
CPU_MASK_RCNN = "mask_rcnn_R_18_FPN"


def scratch_cfg(name: str, *opts):
    cfg = get_semseg_heads_cfg(str(SCRATCH_DIR / f"{name}.yaml"), ["MODEL.DEVICE", "cpu", *opts])
    cfg.MODEL.SEMSEG_HEADS.WIDTH_SCALE = SMALL_WIDTH
    return cfg


def with_instances(batch: list[dict]) -> list[dict]:
    """The rectangles as one "chair" instance per image (box + bitmask), for Mask R-CNN."""
    for item in batch:
        mask = item.pop("sem_seg") == 1
        ys, xs = torch.nonzero(mask, as_tuple=True)
        box = torch.tensor([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=torch.float32)
        instances = Instances(tuple(mask.shape))
        instances.gt_boxes = Boxes(box)
        instances.gt_classes = torch.zeros(1, dtype=torch.long)
        instances.gt_masks = BitMasks(mask[None])
        item["instances"] = instances
    return batch


def test_every_semantic_config_has_a_scratch_variant() -> None:
    assert set(SCRATCH_CONFIGS) == set(MODEL_CONFIGS) | {CPU_MASK_RCNN}


@pytest.mark.parametrize("name", SCRATCH_CONFIGS)
def test_scratch_config_takes_a_finite_step(name: str) -> None:
    cfg = scratch_cfg(name)
    assert cfg.MODEL.WEIGHTS == "", "scratch configs start from random weights"
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    optimizer = build_optimizer(cfg, model)
    scheduler = build_lr_scheduler(cfg, optimizer)
    batch = rectangles_batch(2, 64, 64, seed=0)
    if name == CPU_MASK_RCNN:
        batch = with_instances(batch)
    with EventStorage():  # Detectron2's R-CNN logs training statistics there
        losses = model(batch)
    loss = sum(losses.values())
    assert math.isfinite(float(loss)), {k: float(v) for k, v in losses.items()}
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    scheduler.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_scratch_unet_loss_falls() -> None:
    cfg = scratch_cfg("unet", "SOLVER.MAX_ITER", "30", "SOLVER.WARMUP_ITERS", "3")
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    optimizer = build_optimizer(cfg, model)
    scheduler = build_lr_scheduler(cfg, optimizer)
    batch = rectangles_batch(4, 64, 64, seed=0)
    losses = []
    for _ in range(cfg.SOLVER.MAX_ITER):
        loss = sum(model(batch).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(float(loss))
    assert losses[-1] < 0.8 * losses[0], losses  # 0.90 -> 0.61 when written
