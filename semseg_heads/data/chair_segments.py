"""Chair Segments (Pinto-Alva et al., arXiv:2012.01250) in Detectron2's catalogs.

Layout (the official archives, and what ``tools/generate_chair_segments.py`` writes)::

    <root>/Chair064/<split>/image/<id>.<ext>
    <root>/Chair064/<split>/mask/<id>.<ext>       same file name as the image
    <root>/Chair064/<split>/label/<id>.png        0/1 label maps, written here on first load

Registered names, for resolution ``res`` in 32/64/128 and each split:

- ``chair_segments_{res}_{split}``: semantic, ``evaluator_type`` "sem_seg", ``stuff_classes``
  ["background", "chair"], ``ignore_label`` 255, ``sem_seg_file_name`` a 0/1 label map;
- ``chair_segments_{res}_{split}_instance``: instance, ``evaluator_type`` "coco",
  ``thing_classes`` ["chair"], one RLE instance per image (none when the mask is empty).

A mask pixel is chair when its value exceeds 0.4 of the full range, as the reference loader
(``datasets.py`` of the Chair Segments repository) decides; file names are integer ids, sorted
numerically. Builtin names point at ``$DETECTRON2_DATASETS/ChairSegments`` (default
``./datasets/ChairSegments``) and read the disk only when a dataset is loaded.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from functools import partial

from detectron2.data import DatasetCatalog, MetadataCatalog

from semseg_heads.data.instances import instance_records
from semseg_heads.data.labelmaps import (
    Entry,
    MaskArray,
    Pair,
    build_label_maps,
    foreground_by_threshold,
    pair_files,
)
from semseg_heads.utils.io import resolution_folder

logger = logging.getLogger(__name__)

RESOLUTIONS = (32, 64, 128)
SPLITS = ("train", "val", "test")
CHAIR_THRESHOLD = 0.4
STUFF_CLASSES = ["background", "chair"]
STUFF_COLORS = [[60, 60, 60], [220, 20, 60]]
THING_CLASSES = ["chair"]
THING_COLORS = [[220, 20, 60]]
IGNORE_LABEL = 255
LABEL_PARAMS = {"format": "chair_segments", "threshold": CHAIR_THRESHOLD, "version": 1}


def dataset_names(resolution: int, split: str) -> tuple[str, str]:
    """(semantic name, instance name) of one resolution and split."""
    base = f"chair_segments_{int(resolution)}_{split}"
    return base, base + "_instance"


def builtin_root() -> str:
    """``$DETECTRON2_DATASETS/ChairSegments`` (default ``./datasets/ChairSegments``), absolute."""
    return os.path.abspath(
        os.path.join(os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets")), "ChairSegments")
    )


def _split_dir(root: str, resolution: int, split: str, name: str) -> str:
    d = os.path.join(root, resolution_folder(resolution), split)
    if not os.path.isdir(os.path.join(d, "image")):
        raise FileNotFoundError(
            f"Dataset '{name}': no Chair Segments split folder '{d}' (with image/ and mask/ inside). "
            "Generate data with `python tools/generate_chair_segments.py --root <dir>`, download the "
            "official archives with `python tools/download_chair_segments.py`, then either put them "
            "under $DETECTRON2_DATASETS/ChairSegments or call "
            "semseg_heads.data.register_chair_segments(<dir>)."
        )
    return d


def _threshold(mask: MaskArray, pair: Pair):
    return foreground_by_threshold(mask, CHAIR_THRESHOLD).astype("uint8"), None


def chair_segments_entries(
    root: str, resolution: int, split: str, *, name: str = "", skip_bad_files: bool = False
) -> list[Entry]:
    """Pairs of one split with fresh 0/1 label maps (written on first use)."""
    name = name or dataset_names(resolution, split)[0]
    d = _split_dir(root, resolution, split, name)
    label_dir = os.path.join(d, "label")
    pairs, problems = pair_files(
        os.path.join(d, "image"), os.path.join(d, "mask"), label_dir, integer_ids=True
    )
    return build_label_maps(
        pairs,
        label_dir,
        _threshold,
        LABEL_PARAMS,
        what=f"dataset '{name}' ({d})",
        pair_problems=problems,
        skip_bad_files=skip_bad_files,
    )


def load_chair_segments_semantic(
    root: str, resolution: int, split: str, *, name: str = "", skip_bad_files: bool = False
) -> list[dict]:
    """Detectron2 semantic records: ``file_name``, ``sem_seg_file_name`` (0/1), size, id."""
    return [
        {
            "file_name": e.file_name,
            "sem_seg_file_name": e.pair.label,
            "height": e.height,
            "width": e.width,
            "image_id": int(e.pair.stem),
        }
        for e in chair_segments_entries(root, resolution, split, name=name, skip_bad_files=skip_bad_files)
    ]


def load_chair_segments_instances(
    root: str, resolution: int, split: str, *, name: str = "", skip_bad_files: bool = False
) -> list[dict]:
    """Detectron2 instance records: one "chair" per image, RLE mask, ``XYWH_ABS`` box."""
    name = name or dataset_names(resolution, split)[1]
    entries = chair_segments_entries(root, resolution, split, name=name, skip_bad_files=skip_bad_files)
    return instance_records(entries, label_to_category={1: 0}, image_id=lambda i, e: int(e.pair.stem))


def _unregister_if_other(name: str, root: str, skip_bad_files: bool) -> bool:
    """True when ``name`` is already registered for the same folder (nothing to do)."""
    if name not in DatasetCatalog.list():
        return False
    meta = MetadataCatalog.get(name)
    if meta.get("chair_segments_root") == root and meta.get("skip_bad_files") == skip_bad_files:
        return True
    logger.info("Re-registering '%s': %s -> %s", name, meta.get("chair_segments_root"), root)
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)
    return False


def _register_split(root: str, resolution: int, split: str, skip_bad_files: bool) -> list[str]:
    sem, inst = dataset_names(resolution, split)
    split_dir = os.path.join(root, resolution_folder(resolution), split)
    common = dict(
        chair_segments_root=root,
        resolution=int(resolution),
        split=split,
        skip_bad_files=skip_bad_files,
    )
    if not _unregister_if_other(sem, root, skip_bad_files):
        DatasetCatalog.register(
            sem,
            partial(
                load_chair_segments_semantic, root, resolution, split, name=sem, skip_bad_files=skip_bad_files
            ),
        )
        MetadataCatalog.get(sem).set(
            stuff_classes=list(STUFF_CLASSES),
            stuff_colors=[list(c) for c in STUFF_COLORS],
            ignore_label=IGNORE_LABEL,
            evaluator_type="sem_seg",
            image_root=os.path.join(split_dir, "image"),
            sem_seg_root=os.path.join(split_dir, "label"),
            **common,
        )
    if not _unregister_if_other(inst, root, skip_bad_files):
        DatasetCatalog.register(
            inst,
            partial(
                load_chair_segments_instances,
                root,
                resolution,
                split,
                name=inst,
                skip_bad_files=skip_bad_files,
            ),
        )
        MetadataCatalog.get(inst).set(
            thing_classes=list(THING_CLASSES),
            thing_colors=[list(c) for c in THING_COLORS],
            thing_dataset_id_to_contiguous_id={1: 0},
            # the semantic view of the same data (instance -> semantic evaluation)
            stuff_classes=list(STUFF_CLASSES),
            stuff_colors=[list(c) for c in STUFF_COLORS],
            ignore_label=IGNORE_LABEL,
            evaluator_type="coco",
            image_root=split_dir,
            **common,
        )
    return [sem, inst]


def find_splits(root: str, resolutions: Iterable[int] = RESOLUTIONS) -> list[tuple[int, str]]:
    """(resolution, split) of every ``Chair0XX/<split>/image`` folder under ``root``."""
    found = []
    for res in resolutions:
        res_dir = os.path.join(root, resolution_folder(res))
        if not os.path.isdir(res_dir):
            continue
        splits = [s for s in sorted(os.listdir(res_dir)) if os.path.isdir(os.path.join(res_dir, s, "image"))]
        splits.sort(key=lambda s: (SPLITS.index(s) if s in SPLITS else len(SPLITS), s))
        found += [(int(res), s) for s in splits]
    return found


def register_chair_segments(
    root: str,
    resolutions: Iterable[int] | None = None,
    splits: Iterable[str] | None = None,
    *,
    skip_bad_files: bool = False,
) -> list[str]:
    """Register the semantic and instance datasets of every split found under ``root``.

    ``root`` holds ``Chair032/``, ``Chair064/`` and/or ``Chair128/``. Registering the same folder
    twice does nothing; registering another folder under the same names replaces them.
    ``skip_bad_files=True`` leaves bad files out (each logged, with a count) instead of raising.
    Returns the registered names.
    """
    root = os.path.abspath(os.path.expanduser(str(root)))
    found = find_splits(root, RESOLUTIONS if resolutions is None else resolutions)
    if splits is not None:
        wanted = set(splits)
        found = [(r, s) for r, s in found if s in wanted]
    if not found:
        raise FileNotFoundError(
            f"No Chair Segments data under '{root}': expected {resolution_folder(64)}/<split>/image and "
            "mask folders (tools/generate_chair_segments.py or tools/download_chair_segments.py make them)"
        )
    names = []
    for res, split in found:
        names += _register_split(root, res, split, skip_bad_files)
    return names


def register_builtin_chair_segments(root: str | None = None, *, skip_bad_files: bool = False) -> list[str]:
    """Register every standard name lazily; nothing is read until a dataset is loaded."""
    root = os.path.abspath(root) if root else builtin_root()
    names = []
    for res in RESOLUTIONS:
        for split in SPLITS:
            names += _register_split(root, res, split, skip_bad_files=skip_bad_files)
    return names


register_builtin_chair_segments()
