"""Evaluators that report the Chair Segments paper's metrics beside Detectron2's own.

``ChairSegmentsEvaluator`` scores semantic predictions (``{"sem_seg": [C, H, W]}``) and sits
beside ``SemSegEvaluator``; ``ChairSegmentsInstanceEvaluator`` merges instance predictions
(``{"instances": Instances}``, e.g. Mask R-CNN) into one object/background map and scores that,
beside ``COCOEvaluator``. Both compute the metrics of ``paper_metrics`` (Pinto-Alva et al.,
Sec. 4), so every model lands in the same table.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections import OrderedDict

import numpy as np
import pycocotools.mask as mask_util
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.structures import Instances
from detectron2.utils import comm
from detectron2.utils.file_io import PathManager
from PIL import Image

from semseg_heads.evaluation.paper_metrics import (
    MIN_OBJECT_PIXELS,
    BinarySegmentationScores,
    ImageCounts,
)

__all__ = [
    "ChairSegmentsEvaluator",
    "ChairSegmentsInstanceEvaluator",
    "background_id",
    "read_label_map",
    "merge_instances",
    "annotations_to_mask",
    "all_background_scores",
]

logger = logging.getLogger(__name__)

#: Results key in the dict the evaluators return (and prefix in ``metrics.json``).
RESULTS_KEY = "chair_segments"


def background_id(stuff_classes: list[str] | None) -> int:
    """Index of the background class: the class named "background", else 0."""
    if stuff_classes and "background" in stuff_classes:
        return list(stuff_classes).index("background")
    return 0


def read_label_map(path: str, num_classes: int, ignore_label: int) -> np.ndarray:
    """Read a ``sem_seg_file_name`` label map; values must be class ids or ``ignore_label``."""
    try:
        with PathManager.open(path, "rb") as f:
            label = np.asarray(Image.open(f), dtype=np.int64)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read ground-truth label map {path}: {e}") from e
    if label.ndim != 2:
        raise ValueError(f"ground-truth label map {path} has shape {label.shape}; expected (H, W)")
    bad = ((label >= num_classes) & (label != ignore_label)) | (label < 0)
    if bad.any():
        values = sorted(int(v) for v in np.unique(label[bad]))[:10]
        raise ValueError(
            f"ground-truth label map {path} holds values {values} that are neither class ids "
            f"(0..{num_classes - 1}) nor the ignore label {ignore_label}"
        )
    return label


def annotations_to_mask(annotations: list[dict], height: int, width: int) -> np.ndarray:
    """Union of the instance masks of a Detectron2 record's ``annotations`` (RLE or polygons)."""
    merged = np.zeros((height, width), dtype=bool)
    for ann in annotations:
        seg = ann.get("segmentation")
        if seg is None:
            raise ValueError(f"annotation {ann} has no 'segmentation'; semantic metrics need masks")
        if isinstance(seg, dict):
            rle = seg
            if isinstance(rle.get("counts"), list):  # uncompressed RLE
                rle = mask_util.frPyObjects(rle, height, width)
        elif isinstance(seg, list):
            rle = mask_util.merge(mask_util.frPyObjects(seg, height, width))
        else:
            raise ValueError(f"unknown segmentation format {type(seg).__name__} in {ann}")
        merged |= mask_util.decode(rle).astype(bool)
    return merged


def merge_instances(instances: Instances, score_threshold: float) -> np.ndarray:
    """One object/background map from instance predictions: the union of the binary masks
    of the instances scoring at least ``score_threshold``."""
    height, width = instances.image_size
    if not instances.has("pred_masks"):
        raise ValueError(
            "instance predictions have no 'pred_masks': the Chair Segments metrics need a model "
            "with a mask head (MODEL.MASK_ON True)"
        )
    keep = instances.scores >= score_threshold
    masks = instances.pred_masks[keep]
    if len(masks) == 0:
        return np.zeros((height, width), dtype=bool)
    return masks.to(torch.bool).any(dim=0).cpu().numpy()


class _PaperMetricsEvaluator(DatasetEvaluator):
    """Shared bookkeeping: per-image counts, distributed gather, summary and dump."""

    def __init__(
        self,
        dataset_name: str,
        distributed: bool = True,
        output_dir: str | None = None,
        *,
        min_object_pixels: int = MIN_OBJECT_PIXELS,
    ):
        self._dataset_name = dataset_name
        self._distributed = distributed
        self._output_dir = output_dir
        self._min_object_pixels = min_object_pixels
        self._records = {r["file_name"]: r for r in DatasetCatalog.get(dataset_name)}
        self.reset()

    def reset(self) -> None:
        self._counts: list[tuple[str, ImageCounts]] = []

    def _record(self, inp: dict) -> dict:
        try:
            return self._records[inp["file_name"]]
        except KeyError:
            raise KeyError(
                f"{inp.get('file_name')!r} is not an image of dataset '{self._dataset_name}'"
            ) from None

    def _add(self, file_name: str, pred: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> None:
        if pred.shape != gt.shape:
            raise ValueError(
                f"prediction for {file_name} has shape {pred.shape} but its ground truth has "
                f"{gt.shape}; models must return outputs at the input's height/width"
            )
        scores = BinarySegmentationScores()
        self._counts.append((file_name, scores.add(pred, gt, valid)))

    def evaluate(self) -> OrderedDict | None:
        counts = self._counts
        if self._distributed:
            comm.synchronize()
            counts = list(itertools.chain(*comm.gather(counts, dst=0)))
            if not comm.is_main_process():
                return None
        if not counts:
            logger.warning(f"[{type(self).__name__}] received no predictions for {self._dataset_name}")
            return OrderedDict()
        scores = BinarySegmentationScores(self._min_object_pixels)
        scores.extend([c for _, c in counts])
        res = scores.summary()
        empty = sum(1 for _, c in counts if c.total == 0)
        if empty:
            logger.warning(
                f"{empty} image(s) of {self._dataset_name} have every ground-truth pixel marked "
                "ignore; check that the label maps hold class ids, not a raw 0/255 mask"
            )
        if self._output_dir:
            PathManager.mkdirs(self._output_dir)
            per_image = [
                {"file_name": f, "iou": _none_if_nan(c.iou), "dice": _none_if_nan(c.dice), **vars(c)}
                for f, c in counts
            ]
            path = os.path.join(self._output_dir, "chair_segments_per_image.json")
            with PathManager.open(path, "w") as f:
                summary = {k: _none_if_nan(v) for k, v in res.items()}
                json.dump({"summary": summary, "images": per_image}, f)
        logger.info(f"Chair Segments paper metrics on {self._dataset_name}: {res}")
        return OrderedDict({RESULTS_KEY: res})


def _none_if_nan(x: float) -> float | None:
    return None if np.isnan(x) else x


class ChairSegmentsEvaluator(_PaperMetricsEvaluator):
    """The paper's Prec./IoU/Dice (+ two-class mIoU) for semantic predictions.

    The object is every class but background (for Chair Segments: "chair"); a pixel is
    predicted object when the argmax over ``sem_seg`` is not background, which for two
    classes is the reference code's "probability > 0.5". Pixels equal to the dataset's
    ``ignore_label`` are not scored.
    """

    def __init__(
        self,
        dataset_name: str,
        distributed: bool = True,
        output_dir: str | None = None,
        *,
        min_object_pixels: int = MIN_OBJECT_PIXELS,
    ):
        super().__init__(dataset_name, distributed, output_dir, min_object_pixels=min_object_pixels)
        meta = MetadataCatalog.get(dataset_name)
        self._num_classes = len(meta.stuff_classes)
        self._background = background_id(meta.stuff_classes)
        self._ignore_label = meta.get("ignore_label", 255)
        for r in self._records.values():
            if "sem_seg_file_name" not in r:
                raise ValueError(
                    f"dataset '{dataset_name}' record {r['file_name']} has no 'sem_seg_file_name'"
                )

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        for inp, out in zip(inputs, outputs):
            record = self._record(inp)
            sem_seg = out["sem_seg"]
            if sem_seg.ndim != 3 or sem_seg.shape[0] < 2:
                raise ValueError(
                    f"'sem_seg' output for {inp['file_name']} has shape {tuple(sem_seg.shape)}; "
                    "expected [C, H, W] scores with C >= 2 (background + object)"
                )
            pred = sem_seg.argmax(dim=0).cpu().numpy() != self._background
            gt = read_label_map(record["sem_seg_file_name"], self._num_classes, self._ignore_label)
            valid = gt != self._ignore_label
            self._add(inp["file_name"], pred, (gt != self._background) & valid, valid)


class ChairSegmentsInstanceEvaluator(_PaperMetricsEvaluator):
    """The paper's metrics for instance predictions merged into an object/background map.

    Ground truth: the record's ``sem_seg_file_name`` when it has one, else the union of its
    annotation masks. Predicted object pixels: the union of the predicted masks of instances
    scoring at least ``score_threshold``.
    """

    def __init__(
        self,
        dataset_name: str,
        distributed: bool = True,
        output_dir: str | None = None,
        *,
        score_threshold: float = 0.5,
        min_object_pixels: int = MIN_OBJECT_PIXELS,
    ):
        super().__init__(dataset_name, distributed, output_dir, min_object_pixels=min_object_pixels)
        self._score_threshold = score_threshold
        meta = MetadataCatalog.get(dataset_name)
        self._ignore_label = meta.get("ignore_label", 255)

    def _ground_truth(self, record: dict, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        if "sem_seg_file_name" in record:
            gt = read_label_map(record["sem_seg_file_name"], 256, self._ignore_label)
            valid = gt != self._ignore_label
            return (gt != 0) & valid, valid
        if "annotations" not in record:
            raise ValueError(
                f"dataset '{self._dataset_name}' record {record['file_name']} has neither "
                "'annotations' nor 'sem_seg_file_name'"
            )
        gt = annotations_to_mask(record["annotations"], height, width)
        return gt, np.ones_like(gt)

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        for inp, out in zip(inputs, outputs):
            record = self._record(inp)
            instances = out["instances"].to("cpu")
            pred = merge_instances(instances, self._score_threshold)
            gt, valid = self._ground_truth(record, *pred.shape)
            self._add(inp["file_name"], pred, gt, valid)


def all_background_scores(dataset_name: str, min_object_pixels: int = MIN_OBJECT_PIXELS) -> dict:
    """The paper's metrics of the trivial model that predicts background everywhere.

    The floor any trained model must clear: its IoU and Dice are 0 and its Prec. is the
    background share of the pixels.
    """
    meta = MetadataCatalog.get(dataset_name)
    scores = BinarySegmentationScores(min_object_pixels)
    for record in DatasetCatalog.get(dataset_name):
        if "sem_seg_file_name" in record:
            classes = meta.get("stuff_classes", None)
            ignore = meta.get("ignore_label", 255)
            num_classes = len(classes) if classes else 256
            gt = read_label_map(record["sem_seg_file_name"], num_classes, ignore)
            valid = gt != ignore
            gt_obj = (gt != background_id(classes)) & valid
        else:
            gt_obj = annotations_to_mask(record.get("annotations", []), record["height"], record["width"])
            valid = np.ones_like(gt_obj)
        scores.add(np.zeros_like(gt_obj), gt_obj, valid)
    return scores.summary()
