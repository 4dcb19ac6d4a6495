"""At a small width every architecture overfits one batch of four generated images (IoU > 0.95),
and Detectron2's SemSegEvaluator scores a pixel-perfect model output as mIoU 100."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import SemSegEvaluator
from modeling_utils import build, foreground_iou, rectangles_batch
from PIL import Image

# (config, Adam learning rate). FCN-32s is left out: its 2x2 score map on 64x64 images cannot
# draw the rectangles' edges to IoU 0.95; FCN-8s is the FCN-VGG16 of the reference results.
ARCHITECTURES = [
    ("fcn8s", 0.01),
    ("fcn_R_50", 0.01),
    ("unet", 0.01),
    ("deconvnet", 0.01),
    ("dilated_basic", 0.003),
    ("dilated_large", 0.003),
]
MAX_ITERS = 400


def overfit(model: torch.nn.Module, batch: list[dict], lr: float, target) -> tuple[int, list[dict]]:
    """Adam on one batch until ``target(outputs)`` holds in eval mode (checked every 10 steps)."""
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    for step in range(1, MAX_ITERS + 1):
        model.train()
        loss = sum(model(batch).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 10 == 0:
            model.eval()
            with torch.no_grad():
                outputs = model(batch)
            if target(outputs):
                return step, outputs
    return MAX_ITERS + 1, outputs


@pytest.mark.parametrize("name,lr", ARCHITECTURES)
def test_overfits_four_images(name: str, lr: float) -> None:
    batch = rectangles_batch(4, 64, 64, seed=0)
    model = build(name, 0.0625, seed=0)
    steps, outputs = overfit(model, batch, lr, lambda out: foreground_iou(out, batch) > 0.95)
    iou = foreground_iou(outputs, batch)
    print(f"{name}: IoU {iou:.4f} after {steps} steps")
    assert iou > 0.95, f"{name} reached IoU {iou:.4f} in {MAX_ITERS} steps"


def test_sem_seg_evaluator_scores_a_perfect_model_output_100(tmp_path) -> None:
    batch = rectangles_batch(4, 64, 64, seed=1)
    dicts = []
    for i, item in enumerate(batch):
        label = tmp_path / f"{i}.png"
        Image.fromarray(item["sem_seg"].numpy().astype(np.uint8)).save(label)
        item["file_name"] = str(tmp_path / f"{i}.jpg")  # the evaluator's key to the label map
        dicts.append(
            {"file_name": item["file_name"], "sem_seg_file_name": str(label), "height": 64, "width": 64}
        )
    name = "semseg_heads_tests_perfect"
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(
        stuff_classes=["background", "chair"], ignore_label=255, evaluator_type="sem_seg"
    )
    try:
        model = build("unet", 0.0625, seed=0)

        def pixel_perfect(outputs) -> bool:
            return all(torch.equal(o["sem_seg"].argmax(0), b["sem_seg"]) for o, b in zip(outputs, batch))

        steps, outputs = overfit(model, batch, 0.01, pixel_perfect)
        assert pixel_perfect(outputs), f"U-Net not pixel-perfect after {MAX_ITERS} steps"
        evaluator = SemSegEvaluator(name, distributed=False)
        evaluator.reset()
        evaluator.process(batch, outputs)
        results = evaluator.evaluate()["sem_seg"]
        print(f"U-Net pixel-perfect after {steps} steps: {results}")
        assert results["mIoU"] == pytest.approx(100.0)
        assert results["pACC"] == pytest.approx(100.0)
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
