"""``DATALOADER.CACHE_IMAGES``: decoded training images and label maps kept in memory once.

For small images (Chair Segments' 64x64) decoding the two PNGs is most of a sample's cost.
Everything is decoded once, in the training process, before any loader worker starts (workers
then share the cache copy-on-write), and kept uncompressed (PPM/PGM bytes: reading one back
is a copy, no inflating). Detectron2's ``DatasetMapper`` runs unchanged: it reads each image
through Detectron2's ``PathManager``, where a handler for ``semseg-cache://`` paths (iopath's
extension point, as Detectron2 registers its own ``detectron2://``) serves the cached bytes.
The memory needed is estimated from the records' sizes first, logged, and the cache is
refused past ``DATALOADER.CACHE_MAX_MB``. ``resolve_cache_images`` turns the default
``DATALOADER.CACHE_IMAGES: None`` ("auto") into a decision: cache when the estimate fits both
``CACHE_MAX_MB`` and a quarter of the memory available, so small datasets train without
decoding in the step while large ones are read from disk as Detectron2 does.

``resolve_num_workers`` turns ``DATALOADER.NUM_WORKERS: -1`` ("auto") into a count for this
machine (see its docstring for the rule and the measurements behind it).
"""

from __future__ import annotations

import io
import logging
import os
import uuid
import weakref
from typing import Any

import detectron2.data.transforms as T
import numpy as np
from detectron2.config import CfgNode
from detectron2.data import DatasetMapper, get_detection_dataset_dicts
from detectron2.data import detection_utils as utils
from detectron2.utils.file_io import PathHandler, PathManager
from PIL import Image

__all__ = [
    "CachedDatasetMapper",
    "estimate_cache_bytes",
    "resolve_cache_images",
    "resolve_num_workers",
    "train_dataset_dicts",
]

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
    if cached is None:  # "auto" (None) counts as not cached: the records are not at hand here
        cached = bool(cfg.DATALOADER.get("CACHE_IMAGES", False))
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 0 if cached or cpus <= 2 else min(4, cpus // 2)


def _available_memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):  # not a POSIX system that reports it
        return None


def resolve_cache_images(cfg: CfgNode, records: list[dict]) -> bool:
    """Whether the training loader caches ``records`` (``DATALOADER.CACHE_IMAGES``).

    True and False are kept (True is refused past ``CACHE_MAX_MB`` by ``CachedDatasetMapper``).
    None, the default, is "auto": cache when the estimate fits ``CACHE_MAX_MB`` and a quarter
    of the memory available now; otherwise read the files as Detectron2's loader does. On a
    2-CPU machine the loader runs in the training process (``resolve_num_workers``), so without
    the cache PNG decoding is part of every step (16 Chair064 samples through
    ``DatasetMapper``: 7-9 ms from the PNGs, 3 ms cached; a width-0.5 U-Net step is about 0.3 s).
    """
    setting = cfg.DATALOADER.CACHE_IMAGES
    if setting is not None:
        if not isinstance(setting, bool):
            raise ValueError(f"DATALOADER.CACHE_IMAGES is {setting!r}; expected True, False or None (auto)")
        return setting
    need = estimate_cache_bytes(records)
    limit = float(cfg.DATALOADER.CACHE_MAX_MB) * 2**20
    available = _available_memory_bytes()
    fits = need <= limit and (available is None or need <= available / 4)
    logger.info(
        f"DATALOADER.CACHE_IMAGES auto: {len(records)} training images need about {need / 2**20:.1f} MiB "
        f"(limit DATALOADER.CACHE_MAX_MB {limit / 2**20:.0f}"
        + (f", a quarter of the {available / 2**30:.1f} GiB available" if available is not None else "")
        + ("): cached" if fits else "): read from disk; set DATALOADER.CACHE_IMAGES True to insist")
    )
    return fits


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
    try:
        with Image.open(record["file_name"]) as im:  # reads the header only
            w, h = im.size
    except OSError as e:  # PIL's UnidentifiedImageError included
        raise ValueError(
            f"training record {record.get('image_id')} has no height/width and its image "
            f"{record['file_name']} cannot be read to find them: {e}"
        ) from e
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
    if type(aug) is T.ResizeShortestEdge:  # the same settings, in the subclass
        return _SkipSameSizeResize(aug.short_edge_length, aug.max_size, aug.sample_style, aug.interp)
    return aug


#: Paths ``semseg-cache://<cache id>/<original path>`` are served from memory.
CACHE_PREFIX = "semseg-cache://"


class _DecodedFiles:
    """One mapper's cache: original path -> the decoded image as uncompressed PPM/PGM bytes.

    Registered under a unique id for ``_CacheHandler`` (weakly: dropped with its mapper); a
    copy (unpickled in a spawned loader worker, or deep-copied) registers under its own id."""

    def __init__(self, files: dict[str, bytes] | None = None) -> None:
        self.id = uuid.uuid4().hex
        self.files: dict[str, bytes] = files if files is not None else {}
        _CACHES[self.id] = self

    def __reduce__(self) -> tuple:
        return (_DecodedFiles, (self.files,))

    def path(self, file_name: str) -> str:
        return f"{CACHE_PREFIX}{self.id}/{file_name}"

    def add(self, file_name: str, image: np.ndarray) -> None:
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PPM")  # PPM for RGB, PGM for one channel
        self.files[file_name] = buf.getvalue()


_CACHES: weakref.WeakValueDictionary[str, _DecodedFiles] = weakref.WeakValueDictionary()


class _CacheHandler(PathHandler):
    """Reads of ``semseg-cache://`` paths, served from the cache that made them."""

    def _get_supported_prefixes(self) -> list[str]:
        return [CACHE_PREFIX]

    def _open(self, path: str, mode: str = "r", buffering: int = -1, **kwargs: Any) -> io.BytesIO:
        self._check_kwargs(kwargs)
        cache_id, _, file_name = path[len(CACHE_PREFIX) :].partition("/")
        cache = _CACHES.get(cache_id)
        if mode != "rb" or cache is None or file_name not in cache.files:
            raise FileNotFoundError(
                f"'{path}' is not in a live DATALOADER.CACHE_IMAGES cache (mode {mode!r})"
            )
        return io.BytesIO(cache.files[file_name])  # shares the immutable bytes; no copy


PathManager.register_handler(_CacheHandler())


class CachedDatasetMapper(DatasetMapper):
    """Detectron2's ``DatasetMapper`` reading images and label maps from an in-memory cache.

    The cache is filled from ``records`` at construction (decoded with Detectron2's
    ``read_image``); each sample is ``DatasetMapper.__call__`` on the record with its file
    names pointing into the cache, so the augmentations, the size check, the tensor conversion
    and the annotation handling are ``DatasetMapper``'s own.
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
        self.cache = _DecodedFiles()
        for r in records:
            self._decode(r)

    def _decode(self, record: dict) -> None:
        try:
            self._decode_files(record)
        except OSError as e:  # PIL's UnidentifiedImageError and truncated files included
            raise ValueError(
                f"DATALOADER.CACHE_IMAGES: cannot decode a file of training record {record.get('image_id')} "
                f"({record['file_name']}, label {record.get('sem_seg_file_name')}): {e}"
            ) from e

    def _decode_files(self, record: dict) -> None:
        # Decoded as DatasetMapper reads them, so that reading the cached copy back in
        # INPUT.FORMAT gives the same pixels: RGB, BGR and YUV go through RGB, "L" stays "L".
        name = record["file_name"]
        if self.image_format == "L":
            self.cache.add(name, utils.read_image(name, "L")[..., 0])
        elif self.image_format in ("RGB", "BGR", "YUV-BT.601"):
            self.cache.add(name, utils.read_image(name, "RGB"))
        else:  # another PIL mode: the file's own bytes (no decoding saved, the same pixels)
            with PathManager.open(name, "rb") as f:
                self.cache.files[name] = f.read()
        if "sem_seg_file_name" in record:
            label = record["sem_seg_file_name"]
            self.cache.add(label, utils.read_image(label, "L")[..., 0])

    def __call__(self, dataset_dict: dict) -> dict[str, Any]:
        if dataset_dict["file_name"] not in self.cache.files:  # a record the cache was not built from
            self._decode(dataset_dict)
        record = dict(dataset_dict, file_name=self.cache.path(dataset_dict["file_name"]))
        if "sem_seg_file_name" in record:
            record["sem_seg_file_name"] = self.cache.path(record["sem_seg_file_name"])
        out = super().__call__(record)
        out["file_name"] = dataset_dict["file_name"]
        return out
