"""The Chair Segments paper's metrics as Detectron2 evaluators, for any binary dataset.

``PerImageIoUEvaluator`` is Detectron2's ``SemSegEvaluator`` (mIoU, pixel accuracy, ...) that
also counts every image's object pixels in its ``process`` (reading the label map itself, so
each is read twice), from which it adds the paper's per-image IoU and Dice (Pinto-Alva et al.,
Sec. 4) under ``"chair_segments"``; the paper's Prec. is ``SemSegEvaluator``'s pixel accuracy.
``InstancesToSemSegEvaluator`` turns instance predictions (Mask R-CNN) into a two-class
semantic map (the union of the confident masks) and hands them to such an evaluator, so
instance models are scored by the same code on the same ground truth.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections import OrderedDict

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator, SemSegEvaluator
from detectron2.structures import Instances
from detectron2.utils import comm
from detectron2.utils.file_io import PathManager
from PIL import Image

from semseg_heads.evaluation.paper_metrics import (
    MIN_OBJECT_PIXELS,
    BinarySegmentationScores,
    ImageCounts,
    count_pixels,
)
from semseg_heads.utils.io import write_json_atomic

__all__ = [
    "PerImageIoUEvaluator",
    "InstancesToSemSegEvaluator",
    "all_background_scores",
    "background_id",
    "foreground_map",
    "ground_truth_mask",
    "merge_instances",
    "read_label_map",
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


def ground_truth_mask(record: dict, dataset_name: str) -> tuple[np.ndarray, np.ndarray]:
    """(object mask, valid mask) of a record's ``sem_seg_file_name``: object = every class but
    the dataset's background, valid = not its ``ignore_label``. The one way ground truth is
    read outside ``SemSegEvaluator`` (baselines, drawings)."""
    if "sem_seg_file_name" not in record:
        raise ValueError(
            f"dataset '{dataset_name}' record {record.get('file_name')} has no 'sem_seg_file_name'; "
            "the binary metrics score label maps"
        )
    meta = MetadataCatalog.get(dataset_name)
    classes = meta.stuff_classes
    ignore = meta.get("ignore_label", 255)
    gt = read_label_map(record["sem_seg_file_name"], len(classes), ignore)
    valid = gt != ignore
    return (gt != background_id(classes)) & valid, valid


def merge_instances(instances: Instances, score_threshold: float) -> np.ndarray:
    """One object/background map from instance predictions: the union of the binary masks
    of the instances scoring at least ``score_threshold``."""
    height, width = instances.image_size
    if not instances.has("pred_masks"):
        raise ValueError(
            "instance predictions have no 'pred_masks': the binary metrics need a model with a "
            "mask head (MODEL.MASK_ON True)"
        )
    masks = instances.pred_masks[instances.scores >= score_threshold]
    if len(masks) == 0:
        return np.zeros((height, width), dtype=bool)
    return masks.to(torch.bool).any(dim=0).cpu().numpy()


def foreground_map(output: dict, background: int = 0, score_threshold: float = 0.5) -> np.ndarray:
    """A model output -> its boolean object map: the argmax of ``sem_seg`` is not ``background``,
    or, for ``instances``, the union of the masks scoring at least ``score_threshold``."""
    if "sem_seg" in output:
        return (output["sem_seg"].argmax(dim=0) != background).cpu().numpy()
    if "instances" in output:
        return merge_instances(output["instances"].to("cpu"), score_threshold)
    raise ValueError(f"model output has neither 'sem_seg' nor 'instances' (keys: {sorted(output)})")


class PerImageIoUEvaluator(SemSegEvaluator):
    """``SemSegEvaluator`` plus the paper's per-image IoU and Dice of a binary dataset.

    The object is the class that is not background (``stuff_classes`` has two, one of them
    "background" or else class 0 is background); a pixel is predicted object when the argmax
    over ``sem_seg`` is the object, the reference code's "probability > 0.5". Pixels equal to
    ``ignore_label`` are not scored. Results: Detectron2's ``"sem_seg"`` block and
    ``"chair_segments"``: ``Prec`` (= ``pACC``), ``IoU`` and ``Dice`` (per image, averaged over
    images with more than ``min_object_pixels`` object pixels), ``mIoU`` (= ``sem_seg/mIoU``).
    """

    def __init__(
        self,
        dataset_name: str,
        distributed: bool = True,
        output_dir: str | None = None,
        *,
        min_object_pixels: int = MIN_OBJECT_PIXELS,
    ):
        meta = MetadataCatalog.get(dataset_name)
        classes = meta.get("stuff_classes", None)
        if not classes or len(classes) != 2:
            raise ValueError(
                f"dataset '{dataset_name}': per-image IoU/Dice need a binary dataset, but its "
                f"metadata stuff_classes is {classes}; set MetadataCatalog.get(name).paper_metrics = "
                "False for other datasets"
            )
        super().__init__(dataset_name, distributed=distributed, output_dir=output_dir)
        # Kept here rather than read back from SemSegEvaluator's private attributes.
        self.dataset_name = dataset_name
        self.distributed = distributed
        self.output_dir = output_dir
        self.ignore_label = meta.ignore_label
        #: Index of the background class (``background_id``); every other class is the object.
        self.background = background_id(classes)
        self.min_object_pixels = min_object_pixels

    def reset(self) -> None:
        super().reset()
        self._image_counts: list[tuple[str, ImageCounts]] = []

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        """Each image's binary counts from its prediction's argmax and its label map (read and
        checked here), then ``SemSegEvaluator.process`` on the same outputs."""
        for inp, out in zip(inputs, outputs):
            file_name = inp["file_name"]
            sem_seg = out["sem_seg"]
            if sem_seg.ndim != 3 or sem_seg.shape[0] != 2:
                raise ValueError(
                    f"'sem_seg' output for {file_name} has shape {tuple(sem_seg.shape)}; expected "
                    "[2, H, W] scores (background + object)"
                )
            if file_name not in self.input_file_to_gt_file:
                raise KeyError(f"{file_name!r} is not an image of dataset '{self.dataset_name}'")
            gt_file = self.input_file_to_gt_file[file_name]
            gt = read_label_map(gt_file, 2, self.ignore_label)
            if gt.shape != tuple(sem_seg.shape[1:]):
                raise ValueError(
                    f"prediction for {file_name} has shape {tuple(sem_seg.shape[1:])} but its ground "
                    f"truth {gt_file} has {gt.shape}; models must return outputs at the input's "
                    "height/width"
                )
            pred = sem_seg.argmax(dim=0).cpu().numpy()
            valid = gt != self.ignore_label
            counts = count_pixels(pred != self.background, gt != self.background, valid)
            self._image_counts.append((file_name, counts))
        super().process(inputs, outputs)

    def evaluate(self) -> OrderedDict | None:
        counts = self._image_counts
        if self.distributed:
            comm.synchronize()
            counts = list(itertools.chain(*comm.gather(counts, dst=0)))
        results = super().evaluate()
        if results is None:  # not the main process
            return None
        if not counts:
            logger.warning(f"[{type(self).__name__}] received no predictions for {self.dataset_name}")
            return results
        scores = BinarySegmentationScores(self.min_object_pixels)
        scores.extend([c for _, c in counts])
        per_image = scores.summary()
        res = {
            "Prec": results["sem_seg"]["pACC"],
            "IoU": per_image["IoU"],
            "Dice": per_image["Dice"],
            "mIoU": results["sem_seg"]["mIoU"],
            "num_images": per_image["num_images"],
            "num_scored_images": per_image["num_scored_images"],
        }
        empty = sum(1 for _, c in counts if c.total == 0)
        if empty:
            logger.warning(
                f"{empty} image(s) of {self.dataset_name} have every ground-truth pixel marked "
                "ignore; check that the label maps hold class ids, not a raw 0/255 mask"
            )
        if self.output_dir:
            PathManager.mkdirs(self.output_dir)
            images = [
                {"file_name": f, "iou": _none_if_nan(c.iou), "dice": _none_if_nan(c.dice), **vars(c)}
                for f, c in counts
            ]
            summary = {k: _none_if_nan(v) for k, v in res.items()}
            path = os.path.join(self.output_dir, "chair_segments_per_image.json")
            write_json_atomic({"summary": summary, "images": images}, path)
        logger.info(f"Chair Segments paper metrics on {self.dataset_name}: {res}")
        results[RESULTS_KEY] = res
        return results


def _none_if_nan(x: float) -> float | None:
    return None if isinstance(x, float) and np.isnan(x) else x


class InstancesToSemSegEvaluator(DatasetEvaluator):
    """Scores instance predictions with a semantic evaluator (e.g. ``PerImageIoUEvaluator``):
    each output's ``instances`` become ``sem_seg`` scores [2, H, W] of the union of the masks
    scoring at least ``score_threshold`` (``TEST.INSTANCE_SCORE_THRESH``)."""

    def __init__(self, evaluator: DatasetEvaluator, score_threshold: float = 0.5):
        self._evaluator = evaluator
        self._score_threshold = score_threshold

    def reset(self) -> None:
        self._evaluator.reset()

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        semantic = []
        for out in outputs:
            obj = torch.from_numpy(foreground_map(out, score_threshold=self._score_threshold))
            # The channel of the wrapped evaluator's background id (PerImageIoUEvaluator's; 0
            # otherwise) gets the background.
            channels = [obj, ~obj] if getattr(self._evaluator, "background", 0) == 1 else [~obj, obj]
            semantic.append({"sem_seg": torch.stack(channels).float()})
        self._evaluator.process(inputs, semantic)

    def evaluate(self) -> OrderedDict | None:
        return self._evaluator.evaluate()


def all_background_scores(dataset_name: str, min_object_pixels: int = MIN_OBJECT_PIXELS) -> dict:
    """The paper's metrics of the trivial model that predicts background everywhere, scored by
    ``PerImageIoUEvaluator`` itself: the floor any trained model must clear (IoU and Dice 0,
    Prec. the background share of the pixels)."""
    evaluator = PerImageIoUEvaluator(dataset_name, distributed=False, min_object_pixels=min_object_pixels)
    evaluator.reset()
    background = background_id(MetadataCatalog.get(dataset_name).stuff_classes)
    for record in DatasetCatalog.get(dataset_name):
        scores = torch.zeros(2, record["height"], record["width"])
        scores[background] = 1.0
        evaluator.process([{"file_name": record["file_name"]}], [{"sem_seg": scores}])
    return dict(evaluator.evaluate()[RESULTS_KEY])
