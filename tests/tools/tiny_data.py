"""A tiny hand-made segmentation dataset for tool tests that must not depend on the generator."""

from __future__ import annotations

import os

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image


def write_tiny_semseg(root: str, n: int, size: int = 64, seed: int = 0) -> list[dict]:
    """``n`` images with one bright rectangle ("chair") each; label maps hold 0/1."""
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "image"), exist_ok=True)
    os.makedirs(os.path.join(root, "label"), exist_ok=True)
    records = []
    for i in range(n):
        img = rng.integers(0, 100, (size, size, 3), dtype=np.uint8)
        label = np.zeros((size, size), dtype=np.uint8)
        y0, x0 = rng.integers(4, size // 2, 2)
        h, w = rng.integers(size // 4, size // 2, 2)
        label[y0 : y0 + h, x0 : x0 + w] = 1
        img[label == 1] = (200, 180, 60)
        image_path = os.path.join(root, "image", f"{i}.png")
        label_path = os.path.join(root, "label", f"{i}.png")
        Image.fromarray(img).save(image_path)
        Image.fromarray(label).save(label_path)
        records.append(
            {"file_name": image_path, "sem_seg_file_name": label_path, "height": size, "width": size}
        )
    return records


def register_tiny_semseg(name: str, root: str, n: int, seed: int = 0) -> str:
    """Register ``name`` (evaluator_type "sem_seg", classes background/chair) if not yet."""
    if name not in DatasetCatalog.list():
        records = write_tiny_semseg(root, n, seed=seed)
        DatasetCatalog.register(name, lambda: [dict(r) for r in records])
        MetadataCatalog.get(name).set(
            stuff_classes=["background", "chair"], ignore_label=255, evaluator_type="sem_seg"
        )
    return name
