"""Your own image/mask folders from the command line: ``--dataset NAME=IMAGES_DIR:MASKS_DIR``.

``tools/train_net.py`` and ``tools/demo.py`` share these options; each ``--dataset`` is
registered with :func:`semseg_heads.data.register_folder_dataset` (so ``NAME`` and, for binary
masks, ``NAME_instance`` exist) before the config is used, and the config's datasets then name
them like any Detectron2 dataset::

    tools/train_net.py --config-file configs/ChairSegments/unet.yaml \\
        --dataset my_train=data/train/images:data/train/masks \\
        --dataset my_val=data/val/images:data/val/masks --classes background,chair \\
        DATASETS.TRAIN '("my_train",)' DATASETS.TEST '("my_val",)' MODEL.DEVICE cpu

``MODEL.SEM_SEG_HEAD.NUM_CLASSES`` (``MODEL.ROI_HEADS.NUM_CLASSES`` for instance datasets)
follows the datasets' class count unless it is given on the command line, where a mismatch is
an error naming the first label-map file and value that do not fit.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

import numpy as np
from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

from semseg_heads.data.chair_segments import register_builtin_chair_segments
from semseg_heads.data.folder import MASK_FORMATS, register_folder_dataset

logger = logging.getLogger(__name__)

__all__ = [
    "DatasetConfigError",
    "add_dataset_arguments",
    "check_datasets_registered",
    "fit_num_classes",
    "register_datasets_from_args",
]


class DatasetConfigError(ValueError):
    """The config and the datasets disagree (unregistered name, class count)."""


def _colours(text: str) -> list[tuple[int, int, int]]:
    out = []
    for part in text.split(":"):
        rgb = part.split(",")
        try:
            colour = tuple(int(c) for c in rgb)
        except ValueError:
            colour = ()
        if len(colour) != 3 or not all(0 <= c <= 255 for c in colour):
            raise argparse.ArgumentTypeError(f"colours are r,g,b (0..255) separated by ':', got {text!r}")
        out.append(colour)
    return out


def _value_map(text: str) -> dict[int, int]:
    try:
        return {int(k): int(v) for k, v in (item.split("=") for item in text.split(","))}
    except ValueError:
        raise argparse.ArgumentTypeError(f"--value-map takes VALUE=ID[,VALUE=ID...], got {text!r}") from None


def _dataset(text: str) -> tuple[str, str, str]:
    name, sep, dirs = text.partition("=")
    images, colon, masks = dirs.rpartition(":")
    if not (sep and colon and name and images and masks):
        raise argparse.ArgumentTypeError(f"--dataset takes NAME=IMAGES_DIR:MASKS_DIR, got {text!r}")
    return name, images, masks


def add_mask_arguments(group: argparse._ActionsContainer) -> None:
    """Add the options of ``register_folder_dataset`` that say how masks are read (shared by
    ``--dataset`` and ``tools/validate_dataset.py``); ``mask_options`` reads them back."""
    group.add_argument("--classes", type=lambda s: s.split(","), help="class names in id order: bg,chair,...")
    group.add_argument("--palette", type=_colours, help="colour masks: colour i is class i, r,g,b:r,g,b:...")
    group.add_argument("--mask-format", default="auto", choices=MASK_FORMATS, help="default: auto")
    group.add_argument("--ignore-label", type=int, help="mask value meaning 'ignore' (default 255)")
    group.add_argument(
        "--mask-threshold", type=float, default=0.4, help="binary masks: foreground above this share"
    )
    group.add_argument("--value-map", type=_value_map, help="map mask values to class ids: 300=3,301=4")
    group.add_argument("--mask-suffix", default="", help="mask name = image name + suffix (e.g. _mask)")


def mask_options(args: argparse.Namespace) -> dict:
    """The keyword arguments of ``register_folder_dataset`` / ``validate_folder_dataset`` given
    by ``add_mask_arguments``' options."""
    return {
        "classes": args.classes,
        "palette": args.palette,
        "mask_format": args.mask_format,
        "ignore_label": args.ignore_label,
        "threshold": args.mask_threshold,
        "value_map": args.value_map,
        "mask_suffix": args.mask_suffix,
    }


def add_dataset_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``--dataset`` (repeatable) and the mask options shared by every ``--dataset``."""
    g = parser.add_argument_group("your own dataset (semseg_heads.data.register_folder_dataset)")
    g.add_argument(
        "--dataset",
        action="append",
        type=_dataset,
        default=[],
        metavar="NAME=IMAGES_DIR:MASKS_DIR",
        help="register a folder of images and masks (paired by file name) as NAME; repeatable",
    )
    g.add_argument("--colors", type=_colours, help="drawing colour per class: r,g,b:r,g,b:...")
    g.add_argument(
        "--skip-bad-files",
        action="store_true",
        help="leave unreadable, unpaired or mismatched files out (each printed, with a count) "
        "instead of stopping at the first; also for the Chair Segments datasets",
    )
    add_mask_arguments(g)
    return parser


def register_datasets_from_args(args: argparse.Namespace) -> list[str]:
    """Register every ``--dataset`` and print what registration decided (how masks are read,
    the classes and the values they come from, files left out); returns the semantic names."""
    skip = bool(getattr(args, "skip_bad_files", False))
    if skip:  # the builtin names read $DETECTRON2_DATASETS/ChairSegments
        register_builtin_chair_segments(skip_bad_files=True)
    names = []
    for name, images, masks in getattr(args, "dataset", None) or []:
        register_folder_dataset(
            name, images, masks, colors=args.colors, skip_bad_files=skip, **mask_options(args)
        )
        print(MetadataCatalog.get(name).registration, file=sys.stderr, flush=True)
        names.append(name)
    return names


def check_datasets_registered(names: Sequence[str], key: str) -> None:
    """A clear error for a config naming a dataset nobody registered."""
    known = set(DatasetCatalog.list())
    for name in names:
        if name not in known:
            raise DatasetConfigError(
                f"{key} names dataset '{name}', which is not registered. Register a folder with "
                f"`--dataset {name}=IMAGES_DIR:MASKS_DIR`, or use a registered name "
                f"(e.g. {', '.join(sorted(n for n in known if n.startswith('chair_segments_64'))[:3])})."
            )


def _classes(name: str) -> tuple[str, list[str]] | None:
    meta = MetadataCatalog.get(name)
    if meta.get("evaluator_type", None) == "coco":
        things = meta.get("thing_classes", None)
        return ("MODEL.ROI_HEADS.NUM_CLASSES", list(things)) if things is not None else None
    stuff = meta.get("stuff_classes", None)
    return ("MODEL.SEM_SEG_HEAD.NUM_CLASSES", list(stuff)) if stuff is not None else None


def _first_label_outside(name: str, n: int, ignore: int) -> tuple[str, int] | None:
    """The first label-map file of ``name`` holding a class id >= ``n`` (not ``ignore``)."""
    for record in DatasetCatalog.get(name):
        path = record.get("sem_seg_file_name")
        if not path:
            return None
        with Image.open(path) as im:
            values = np.unique(np.asarray(im))
        bad = [int(v) for v in values if v >= n and v != ignore]
        if bad:
            return path, bad[0]
    return None


def fit_num_classes(cfg: CfgNode, opts: Sequence[str], datasets: Sequence[str]) -> None:
    """Make the config's class count follow ``datasets`` (a config being built, unfrozen).

    A count given on the command line (``opts``) is kept; if a dataset needs more, this is an
    error naming the first file and value that do not fit and the key to change.
    """
    registered = set(DatasetCatalog.list())
    found = [(d, c) for d in datasets if d in registered and (c := _classes(d)) is not None]
    if not found:
        return
    key, classes = found[0][1]
    for d, (k, other) in found[1:]:
        if k == key and len(other) != len(classes):
            raise DatasetConfigError(
                f"datasets '{found[0][0]}' ({len(classes)} classes: {', '.join(classes)}) and '{d}' "
                f"({len(other)} classes: {', '.join(other)}) disagree; train and test on datasets "
                "with the same classes (--classes names them)"
            )
    node, leaf = cfg, key.split(".")
    for part in leaf[:-1]:
        node = node[part]
    current = node[leaf[-1]]
    given = key in list(opts)[::2]
    n = len(classes)
    if current == n:
        return
    if not given:
        logger.warning(
            "%s %s -> %d to follow dataset '%s' (%s); give %s on the command line to fix it",
            key,
            current,
            n,
            found[0][0],
            ", ".join(classes),
            key,
        )
        node[leaf[-1]] = n
        return
    if current > n:
        return  # more outputs than classes: wasteful but every label fits
    ignore = int(MetadataCatalog.get(found[0][0]).get("ignore_label", 255))
    where = None
    if key == "MODEL.SEM_SEG_HEAD.NUM_CLASSES":
        for d, _ in found:
            where = _first_label_outside(d, current, ignore)
            if where:
                break
    detail = f": '{os.path.basename(where[0])}' ({where[0]}) holds class id {where[1]}" if where else ""
    raise DatasetConfigError(
        f"{key} is {current} on the command line but dataset '{found[0][0]}' has {n} classes "
        f"({', '.join(classes)}){detail}. Set {key} {n}, or leave it out to follow the dataset."
    )
