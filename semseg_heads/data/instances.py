"""Instance records from label maps, through a COCO json cached next to the label maps.

The json is what ``COCOEvaluator`` reads (``metadata.json_file``) and the records come back from
it through Detectron2's own ``load_coco_json``, so training, evaluation and the json can never
disagree. Masks are RLE (holes and one-pixel legs survive, which polygons would not guarantee),
so Mask R-CNN trains on these datasets with ``INPUT.MASK_FORMAT bitmask``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pycocotools.mask as mask_util
from detectron2.data import MetadataCatalog
from detectron2.data.datasets.coco import load_coco_json
from iopath.common.file_io import file_lock

from semseg_heads.data.labelmaps import Entry, read_label_map
from semseg_heads.utils.io import write_json_atomic

logger = logging.getLogger(__name__)

JSON_FORMAT_VERSION = 1


def mask_to_annotation(mask: np.ndarray, category_id: int) -> dict:
    """One COCO annotation (RLE segmentation, XYWH box, area) covering a boolean mask."""
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {
        "segmentation": {
            "size": [int(mask.shape[0]), int(mask.shape[1])],
            "counts": rle["counts"].decode("ascii"),
        },
        "area": float(mask_util.area(rle)),
        "bbox": [float(x) for x in mask_util.toBbox(rle)],
        "category_id": int(category_id),
        "iscrowd": 0,
    }


def split_instances(label: np.ndarray, value: int, mode: str) -> list[np.ndarray]:
    """The instance masks of class ``value``: the whole class ("image") or each 8-connected
    component ("components")."""
    mask = label == value
    if not mask.any():
        return []
    if mode == "image":
        return [mask]
    if mode == "components":
        import cv2

        n, comp = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
        return [comp == i for i in range(1, n)]
    raise ValueError(f"instance mode must be 'image' or 'components', got {mode!r}")


def _json_is_fresh(json_path: str, entries: Sequence[Entry], image_root: str, params: dict) -> bool:
    try:
        json_t = os.stat(json_path).st_mtime_ns
        if any(os.stat(e.pair.label).st_mtime_ns > json_t for e in entries):
            return False
        with open(json_path) as f:
            data = json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    if data.get("info", {}).get("semseg_heads") != params:
        return False
    names = [img["file_name"] for img in data.get("images", [])]
    return names == [os.path.relpath(e.pair.image, image_root) for e in entries]


def write_coco_json(
    entries: Sequence[Entry],
    image_root: str,
    json_path: str,
    *,
    categories: Sequence[dict],
    label_to_category: Mapping[int, int],
    image_id: Callable[[int, Entry], int],
    mode: str = "image",
    description: str = "",
) -> bool:
    """Write (or keep, when fresh) the COCO instances json for ``entries``; True if written."""
    params = {
        "version": JSON_FORMAT_VERSION,
        "mode": mode,
        "label_to_category": {str(k): v for k, v in sorted(label_to_category.items())},
    }
    with file_lock(json_path):
        if _json_is_fresh(json_path, entries, image_root, params):
            return False
        _write_coco_json(
            entries, image_root, json_path, categories, label_to_category, image_id, mode, params, description
        )
    return True


def _write_coco_json(
    entries, image_root, json_path, categories, label_to_category, image_id, mode, params, description
):
    images, annotations = [], []
    for i, entry in enumerate(entries):
        img_id = image_id(i, entry)
        images.append(
            {
                "id": img_id,
                "file_name": os.path.relpath(entry.pair.image, image_root),
                "height": entry.height,
                "width": entry.width,
            }
        )
        label = read_label_map(entry.pair.label)
        for value, cat in sorted(label_to_category.items()):
            for mask in split_instances(label, value, mode):
                ann = mask_to_annotation(mask, cat)
                ann.update(id=len(annotations) + 1, image_id=img_id)
                annotations.append(ann)
    coco = {
        "info": {"description": description, "semseg_heads": params},
        "images": images,
        "annotations": annotations,
        "categories": list(categories),
    }
    write_json_atomic(coco, json_path)
    logger.info("Wrote %d instance(s) on %d image(s) to %s", len(annotations), len(images), json_path)


def load_instances(dataset_name: str, json_path: str, image_root: str) -> list[dict]:
    """Records via Detectron2's ``load_coco_json``; points ``json_file`` at the json unless
    COCOEvaluator already chose its own conversion for this name."""
    meta = MetadataCatalog.get(dataset_name)
    if not hasattr(meta, "json_file"):
        meta.json_file = json_path
    return load_coco_json(json_path, image_root, dataset_name)
