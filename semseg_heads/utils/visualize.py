"""The one place predictions are drawn: overlays with Detectron2's ``Visualizer`` (``tools/demo.py``,
the browser demo), a chair-map error colouring, and grids of panels such as input | ground truth |
prediction (``tools/main_job.py``'s ``predictions.png``, the study's qualitative grid)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils.visualizer import Visualizer
from PIL import Image, ImageDraw

from semseg_heads.evaluation import background_id, count_pixels, foreground_map, ground_truth_mask

#: Colours of ``binary_errors``: chair found, false chair, missed chair (RGB).
HIT, FALSE_CHAIR, MISSED_CHAIR = (255, 255, 255), (230, 40, 40), (40, 90, 230)


def min_side_scale(shape: Sequence[int], min_side: int) -> float:
    """The drawing scale that makes an image's shorter side at least ``min_side`` (small images,
    such as Chair Segments' 64x64, are drawn upscaled so Visualizer's labels stay legible)."""
    return max(1.0, min_side / min(shape[:2])) if min_side else 1.0


def overlay_sem_seg(
    image_rgb: np.ndarray, labels: np.ndarray, metadata, scale: float = 1.0, alpha: float = 0.8
) -> np.ndarray:
    """``labels`` (H, W class ids; ``metadata.ignore_label`` left undrawn) over the image, in the
    dataset's class names and colours; RGB uint8."""
    return Visualizer(image_rgb, metadata, scale=scale).draw_sem_seg(labels, alpha=alpha).get_image()


def draw_predictions(
    image_rgb: np.ndarray,
    predictions: dict,
    metadata,
    confidence_threshold: float = 0.5,
    scale: float = 1.0,
    alpha: float = 0.8,
) -> np.ndarray:
    """The image with a model output drawn on it, RGB uint8: ``sem_seg`` as its argmax label map,
    ``instances`` (Mask R-CNN) with scores of at least ``confidence_threshold``."""
    if "sem_seg" in predictions:
        labels = predictions["sem_seg"].argmax(dim=0).to("cpu")
        return overlay_sem_seg(image_rgb, labels, metadata, scale, alpha)
    if "instances" in predictions:
        instances = predictions["instances"].to("cpu")
        vis = Visualizer(image_rgb, metadata, scale=scale)
        return vis.draw_instance_predictions(instances[instances.scores >= confidence_threshold]).get_image()
    raise ValueError(f"cannot draw a model output with keys {sorted(predictions)}")


def binary_errors(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """A predicted object mask against the true one (both H, W bool): white = object found,
    red = false object, blue = missed object, black = background found; RGB uint8."""
    rgb = np.zeros(pred.shape + (3,), dtype=np.uint8)
    rgb[pred & gt] = HIT
    rgb[pred & ~gt] = FALSE_CHAIR
    rgb[~pred & gt] = MISSED_CHAIR
    return rgb


def panel_grid(
    rows: Sequence[Sequence[tuple[np.ndarray | None, str]]], cell: int, pad: int = 4, header: int = 18
) -> Image.Image:
    """Panels (RGB arrays, each scaled to fit a ``cell`` x ``cell`` square, nearest neighbour) in
    rows on grey; a row with any caption gets a ``header``-pixel strip of captions above it. A
    ``None`` panel is left grey (e.g. a model that did not predict that image)."""
    columns = max((len(r) for r in rows), default=0)
    heights = [(header if any(c for _, c in r) else 0) + cell + pad for r in rows]
    grid = Image.new("RGB", (columns * (cell + pad) + pad, sum(heights) + pad), "gray")
    draw = ImageDraw.Draw(grid)
    y = 0
    for row, height in zip(rows, heights):
        top = y + height - cell - pad
        for j, (panel, caption) in enumerate(row):
            x = pad + j * (cell + pad)
            if caption:
                draw.text((x, y + 3), caption[: max(4, cell // 6)], fill="white")
            if panel is not None:
                image = Image.fromarray(np.ascontiguousarray(panel))
                scale = cell / max(image.size)
                size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
                grid.paste(image.resize(size, Image.NEAREST), (x, top))
        y += height
    return grid


def prediction_grid(predictor, dataset_name: str, n: int, out_path: str, cell: int = 256) -> str:
    """Rows of ``n`` images of a binary semantic dataset: input | ground truth | prediction
    (captioned with its IoU), both drawn by Detectron2's ``Visualizer``; written to ``out_path``.

    ``predictor``: a ``semseg_heads.engine.Predictor`` (BGR image in, ``{"sem_seg"}`` out).
    """
    records = DatasetCatalog.get(dataset_name)
    picks = np.linspace(0, len(records) - 1, num=min(n, len(records))).round().astype(int)
    meta = MetadataCatalog.get(dataset_name)
    bg = background_id(meta.stuff_classes)
    rows = []
    for i in picks:
        rec = records[i]
        rgb = np.asarray(Image.open(rec["file_name"]).convert("RGB"))
        output = predictor(np.ascontiguousarray(rgb[:, :, ::-1]))
        pred = output["sem_seg"].argmax(dim=0).cpu().numpy()
        gt_object, valid = ground_truth_mask(rec, dataset_name)
        counts = count_pixels(foreground_map(output, bg), gt_object, valid)
        gt = np.where(gt_object, 1 - bg, bg)  # the binary label map as drawn; ignored pixels undrawn
        gt[~valid] = meta.ignore_label
        iou = f"IoU {100 * counts.iou:.0f}%" if counts.union else "empty, correct"
        scale = min_side_scale(rgb.shape, cell)
        rows.append(
            [
                (rgb, os.path.basename(rec["file_name"])),
                (overlay_sem_seg(rgb, gt, meta, scale), "ground truth"),
                (overlay_sem_seg(rgb, pred, meta, scale), f"prediction, {iou}"),
            ]
        )
    panel_grid(rows, cell).save(out_path)
    return out_path
