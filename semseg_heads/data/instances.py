"""Instance records from label maps, carried directly in Detectron2's record format.

Each record holds its instances as RLE masks with ``BoxMode.XYWH_ABS`` boxes and contiguous
``category_id`` (Detectron2's standard dataset dicts): training reads them as they are, and
``COCOEvaluator`` converts the records to COCO json itself (``convert_to_coco_json``) when it
evaluates. RLE keeps holes and one-pixel legs, which polygons would not guarantee, so Mask
R-CNN trains on these datasets with ``INPUT.MASK_FORMAT bitmask``. Records also keep the
``sem_seg_file_name`` they came from, so the semantic evaluators score instance models on
the same ground truth.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pycocotools.mask as mask_util
from detectron2.structures import BoxMode

from semseg_heads.data.labelmaps import Entry, read_label_map


def mask_to_annotation(mask: np.ndarray, category_id: int) -> dict:
    """One Detectron2 annotation (RLE segmentation, XYWH_ABS box) covering a boolean mask."""
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")  # JSON-friendly; pycocotools takes either
    return {
        "segmentation": rle,
        "bbox": [float(x) for x in mask_util.toBbox(rle)],
        "bbox_mode": BoxMode.XYWH_ABS,
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


def instance_records(
    entries: Sequence[Entry],
    *,
    label_to_category: Mapping[int, int],
    image_id: Callable[[int, Entry], int],
    mode: str = "image",
) -> list[dict]:
    """Detectron2 instance records of ``entries``: label value -> contiguous ``category_id``."""
    records = []
    for i, entry in enumerate(entries):
        label = read_label_map(entry.pair.label)
        annotations = [
            mask_to_annotation(mask, cat)
            for value, cat in sorted(label_to_category.items())
            for mask in split_instances(label, value, mode)
        ]
        records.append(
            {
                "file_name": entry.file_name,
                "sem_seg_file_name": entry.pair.label,
                "height": entry.height,
                "width": entry.width,
                "image_id": image_id(i, entry),
                "annotations": annotations,
            }
        )
    return records
