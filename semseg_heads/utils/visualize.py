"""Figures of predictions: input, ground truth and prediction side by side."""

from __future__ import annotations

import os

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils.visualizer import Visualizer
from PIL import Image

from semseg_heads.evaluation import background_id, count_pixels, foreground_map, ground_truth_mask


def prediction_grid(predictor, dataset_name: str, n: int, out_path: str) -> str:
    """Rows of ``n`` images of a binary semantic dataset: input | ground truth | prediction
    (titled with its IoU), both drawn by Detectron2's ``Visualizer``; written to ``out_path``.

    ``predictor``: a ``semseg_heads.engine.Predictor`` (BGR image in, ``{"sem_seg"}`` out).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = DatasetCatalog.get(dataset_name)
    picks = np.linspace(0, len(records) - 1, num=min(n, len(records))).round().astype(int)
    meta = MetadataCatalog.get(dataset_name)
    fig, axes = plt.subplots(len(picks), 3, figsize=(7.5, 2.5 * len(picks)), squeeze=False)
    for row, i in zip(axes, picks):
        rec = records[i]
        bgr = np.asarray(Image.open(rec["file_name"]).convert("RGB"))[:, :, ::-1]
        output = predictor(bgr)
        pred = output["sem_seg"].argmax(dim=0).cpu().numpy()
        gt_object, valid = ground_truth_mask(rec, dataset_name)
        bg = background_id(meta.stuff_classes)
        counts = count_pixels(foreground_map(output, bg), gt_object, valid)
        gt = np.where(gt_object, 1 - bg, bg)  # the binary label map as drawn; ignored pixels undrawn
        gt[~valid] = meta.ignore_label
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        iou = f"IoU {100 * counts.iou:.0f}%" if counts.union else "empty, correct"
        panels = [
            (rgb, os.path.basename(rec["file_name"])),
            (Visualizer(rgb, meta, scale=4).draw_sem_seg(gt).get_image(), "ground truth"),
            (Visualizer(rgb, meta, scale=4).draw_sem_seg(pred).get_image(), f"prediction, {iou}"),
        ]
        for ax, (img, title) in zip(row, panels):
            ax.imshow(img, interpolation="nearest")
            ax.set_title(title, fontsize=9)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(out_path, dpi=80)
    plt.close(fig)
    return out_path
