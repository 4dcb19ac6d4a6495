"""``DATALOADER.CACHE_IMAGES``: decoded training images and label maps kept in memory once.

For small images (Chair Segments' 64x64) decoding the two PNGs is most of a sample's cost;
with the cache, a sample costs its augmentations (flips) and the copy into a tensor.
Everything is decoded once, in the training process, before any loader worker starts (workers
then share the arrays copy-on-write). The memory needed is estimated from the records' sizes
first, logged, and the cache is refused past ``DATALOADER.CACHE_MAX_MB``.

``resolve_num_workers`` turns ``DATALOADER.NUM_WORKERS: -1`` ("auto") into a count for this
machine (see its docstring for the rule and the measurements behind it).
"""

from __future__ import annotations

import copy
import logging
import os
from typing import Any

import detectron2.data.transforms as T
import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.data import DatasetMapper, get_detection_dataset_dicts
from detectron2.data import detection_utils as utils
from PIL import Image

__all__ = ["CachedDatasetMapper", "estimate_cache_bytes", "resolve_num_workers", "train_dataset_dicts"]

logger = logging.getLogger(__name__)


def resolve_num_workers(cfg: CfgNode, cached: bool | None = None) -> int:
    """``DATALOADER.NUM_WORKERS``, with ``-1`` meaning "auto" for this machine.

    Auto: 0 (load in the training process) when the training images are cached (a batch is
    then a few copies, cheaper than passing it between processes) or the machine has at most
    2 CPUs (there the training step's threads need every core: on the 2-core reference machine
    a 16-image 64x64 batch cost 21-33 ms through worker processes against 8 ms in-process);
    otherwise ``min(4, cpus // 2)`` (Detectron2's default 4, leaving half the cores to the step).
    """
    n = int(cfg.DATALOADER.NUM_WORKERS)
    if n >= 0:
        return n
    if n != -1:
        raise ValueError(f"DATALOADER.NUM_WORKERS is {n}; expected a count >= 0 or -1 (auto)")
    if cached is None:
        cached = bool(cfg.DATALOADER.get("CACHE_IMAGES", False))
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 0 if cached or cpus <= 2 else min(4, cpus // 2)


def train_dataset_dicts(cfg: CfgNode) -> list[dict]:
    """The records Detectron2's ``build_detection_train_loader(cfg)`` would load."""
    return get_detection_dataset_dicts(
        cfg.DATASETS.TRAIN,
        filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS,
        min_keypoints=cfg.MODEL.ROI_KEYPOINT_HEAD.MIN_KEYPOINTS_PER_IMAGE if cfg.MODEL.KEYPOINT_ON else 0,
        proposal_files=cfg.DATASETS.PROPOSAL_FILES_TRAIN if cfg.MODEL.LOAD_PROPOSALS else None,
    )


def _image_size(record: dict) -> tuple[int, int]:
    if "height" in record and "width" in record:
        return int(record["height"]), int(record["width"])
    with Image.open(record["file_name"]) as im:  # reads the header only
        w, h = im.size
    return h, w


def estimate_cache_bytes(records: list[dict]) -> int:
    """Bytes the cache holds for ``records``: 3 uint8 channels per pixel, plus one for the
    label map when the record has one (the arrays' own headers are negligible)."""
    total = 0
    for r in records:
        h, w = _image_size(r)
        total += h * w * (3 + (1 if "sem_seg_file_name" in r else 0))
    return total


class _SkipSameSizeResize(T.ResizeShortestEdge):
    """``ResizeShortestEdge`` that returns a no-op instead of resizing an image to its own size
    (Chair Segments' configs keep 64x64; the resize would still run a PIL pass per image)."""

    def get_transform(self, image: np.ndarray) -> T.Transform:
        tfm = super().get_transform(image)
        if isinstance(tfm, T.ResizeTransform) and (tfm.h, tfm.w) == (tfm.new_h, tfm.new_w):
            return T.NoOpTransform()
        return tfm


def _skip_same_size(aug: T.Augmentation) -> T.Augmentation:
    if type(aug) is T.ResizeShortestEdge:
        aug = copy.copy(aug)
        aug.__class__ = _SkipSameSizeResize
    return aug


class CachedDatasetMapper(DatasetMapper):
    """Detectron2's ``DatasetMapper`` reading images and label maps from an in-memory cache.

    The cache is filled from ``records`` at construction (decoded with Detectron2's
    ``read_image`` in ``INPUT.FORMAT``, sizes checked against the records); the augmentations,
    the tensor conversion and the annotation handling are ``DatasetMapper``'s.
    """

    def __init__(self, cfg: CfgNode, records: list[dict], is_train: bool = True):
        super().__init__(cfg, is_train=is_train)
        self.augmentations = T.AugmentationList([_skip_same_size(a) for a in self.augmentations.augs])
        limit_mb = float(cfg.DATALOADER.CACHE_MAX_MB)
        need_mb = estimate_cache_bytes(records) / 2**20
        if need_mb > limit_mb:
            raise ValueError(
                f"DATALOADER.CACHE_IMAGES: the {len(records)} training images of {tuple(cfg.DATASETS.TRAIN)} "
                f"would take about {need_mb:.0f} MiB in memory, more than DATALOADER.CACHE_MAX_MB "
                f"({limit_mb:.0f}); raise DATALOADER.CACHE_MAX_MB or set DATALOADER.CACHE_IMAGES False"
            )
        logger.info(
            f"DATALOADER.CACHE_IMAGES: caching {len(records)} decoded training images and label maps, "
            f"about {need_mb:.1f} MiB (limit DATALOADER.CACHE_MAX_MB {limit_mb:.0f})"
        )
        self._cache: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
        for r in records:
            self._cache[r["file_name"]] = self._decode(r)

    def _decode(self, record: dict) -> tuple[np.ndarray, np.ndarray | None]:
        image = utils.read_image(record["file_name"], format=self.image_format)
        utils.check_image_size(record, image)
        sem_seg = None
        if "sem_seg_file_name" in record:
            sem_seg = utils.read_image(record["sem_seg_file_name"], "L").squeeze(2)
        # Read-only: an augmentation that wrote in place would corrupt every later epoch.
        image.setflags(write=False)
        if sem_seg is not None:
            sem_seg.setflags(write=False)
        return image, sem_seg

    def __call__(self, dataset_dict: dict) -> dict[str, Any]:
        dataset_dict = copy.deepcopy(dataset_dict)
        key = dataset_dict["file_name"]
        if key not in self._cache:  # a record the cache was not built from
            self._cache[key] = self._decode(dataset_dict)
        image, sem_seg_gt = self._cache[key]
        dataset_dict.pop("sem_seg_file_name", None)
        aug_input = T.AugInput(image, sem_seg=sem_seg_gt)
        transforms = self.augmentations(aug_input)
        image, sem_seg_gt = aug_input.image, aug_input.sem_seg
        image_shape = image.shape[:2]
        # A C-ordered copy always: the cached arrays must never be shared with a batch.
        dataset_dict["image"] = torch.from_numpy(np.array(image.transpose(2, 0, 1), order="C"))
        if sem_seg_gt is not None:
            dataset_dict["sem_seg"] = torch.as_tensor(sem_seg_gt.astype("long"))
        if self.proposal_topk is not None:
            utils.transform_proposals(dataset_dict, image_shape, transforms, proposal_topk=self.proposal_topk)
        if not self.is_train:
            dataset_dict.pop("annotations", None)
            return dataset_dict
        if "annotations" in dataset_dict:
            self._transform_annotations(dataset_dict, transforms, image_shape)
        return dataset_dict
