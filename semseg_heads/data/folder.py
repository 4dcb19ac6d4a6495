"""A user's own folder of images and masks as Detectron2 datasets, in one call.

::

    from semseg_heads.data import register_folder_dataset

    register_folder_dataset("my_chairs_train", "data/train/images", "data/train/masks")
    # -> "my_chairs_train" (semantic) and, for binary masks, "my_chairs_train_instance"

Masks may have any extension and be:

- class-id maps (grayscale, 16-bit or palette images whose *indices* are the class ids),
- colour masks with ``palette=[(r, g, b), ...]`` (colour i is class i) or ``{(r, g, b): id}``,
- binary masks: saved as 0/255 they are detected and 255 is mapped to class 1 (logged), unless
  ``ignore_label`` is given explicitly, in which case 255 means whatever it says;
  ``mask_format="binary"`` thresholds any mask (anti-aliased, JPEG) at ``threshold``.

Label maps of class ids (0..K-1, ``ignore_label`` for ignored pixels) are written once into
``label_dir`` (default ``<mask_dir>_label_maps/<name>/``) and reused while fresh.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from functools import partial

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog

from semseg_heads.data.instances import instance_records
from semseg_heads.data.labelmaps import (
    BAD_VALUES,
    PARAMS_FILE,
    Entry,
    MaskArray,
    Pair,
    Problem,
    build_label_maps,
    check_all,
    foreground_by_threshold,
    pair_files,
    problem_order,
    read_mask,
    report_or_raise,
)

logger = logging.getLogger(__name__)

MASK_FORMATS = ("auto", "class_ids", "palette", "binary")
DEFAULT_IGNORE = 255


def _show(values: Iterable, limit: int = 8) -> str:
    values = list(values)
    text = ", ".join(str(v) for v in values[:limit])
    return text + (f", ... ({len(values)} in all)" if len(values) > limit else "")


def _normalise_palette(palette) -> dict[tuple[int, int, int], int] | None:
    if palette is None:
        return None
    if isinstance(palette, Mapping):
        items = palette.items()
    else:
        items = ((c, i) for i, c in enumerate(palette))
    out = {}
    for color, cls in items:
        color = tuple(int(c) for c in color)
        if len(color) != 3 or not all(0 <= c <= 255 for c in color):
            raise ValueError(f"palette colours must be (r, g, b) in 0..255, got {color}")
        out[color] = int(cls)
    return out


def _gray(mask: MaskArray) -> np.ndarray | None:
    """Single-channel values of a mask, or None for a colour mask that is not gray."""
    v = mask.values
    if v.ndim == 2:
        return v
    if (v[..., 0] == v[..., 1]).all() and (v[..., 0] == v[..., 2]).all():
        return v[..., 0]
    return None


def _rgb(mask: MaskArray) -> np.ndarray:
    v = mask.values
    if mask.mode == "P" and mask.palette_rgb is not None:
        return mask.palette_rgb[v]
    if v.ndim == 2:
        v8 = np.clip(v * (255.0 / mask.full_range), 0, 255).astype(np.uint8) if mask.full_range != 255 else v
        return np.repeat(v8[..., None].astype(np.uint8), 3, axis=2)
    return v.astype(np.uint8)


class FolderDataset:
    """How one folder's masks become label maps; see :func:`register_folder_dataset`."""

    def __init__(
        self,
        name: str,
        image_dir: str,
        mask_dir: str,
        *,
        classes: Sequence[str] | None = None,
        palette=None,
        ignore_label: int | None = None,
        mask_format: str = "auto",
        threshold: float = 0.4,
        image_extensions: Iterable[str] | None = None,
        mask_extensions: Iterable[str] | None = None,
        mask_suffix: str = "",
        label_dir: str | None = None,
        instances: str | bool = "auto",
        skip_bad_files: bool = False,
    ):
        if mask_format not in MASK_FORMATS:
            raise ValueError(f"mask_format must be one of {MASK_FORMATS}, got {mask_format!r}")
        self.name = name
        self.image_dir = os.path.abspath(os.path.expanduser(str(image_dir)))
        self.mask_dir = os.path.abspath(os.path.expanduser(str(mask_dir)))
        self.palette = _normalise_palette(palette)
        if mask_format == "auto" and self.palette is not None:
            mask_format = "palette"
        if mask_format == "palette" and self.palette is None:
            raise ValueError("mask_format='palette' needs palette=[(r, g, b), ...] or {(r, g, b): class_id}")
        self.mask_format = mask_format
        self.ignore_stated = ignore_label is not None
        self.ignore_label = DEFAULT_IGNORE if ignore_label is None else int(ignore_label)
        self.classes = list(classes) if classes is not None else None
        self.threshold = float(threshold)
        self.image_extensions = tuple(image_extensions) if image_extensions else None
        self.mask_extensions = tuple(mask_extensions) if mask_extensions else None
        self.mask_suffix = mask_suffix
        self.label_dir = os.path.abspath(
            label_dir
            or os.path.join(
                os.path.dirname(self.mask_dir), os.path.basename(self.mask_dir) + "_label_maps", name
            )
        )
        self.instances = instances
        self.skip_bad_files = skip_bad_files
        self.decision: dict | None = None  # the resolved format and number of classes
        self._announced = False

    # -- which format, how many classes ------------------------------------------------------

    def request(self) -> dict:
        return {
            "mask_format": self.mask_format,
            "classes": self.classes,
            "palette": sorted([list(c), i] for c, i in self.palette.items()) if self.palette else None,
            "ignore_label": self.ignore_label if self.ignore_stated else None,
            "threshold": self.threshold,
        }

    def pairs(self) -> tuple[list[Pair], list[Problem]]:
        return pair_files(
            self.image_dir,
            self.mask_dir,
            self.label_dir,
            image_extensions=self.image_extensions,
            mask_extensions=self.mask_extensions,
            mask_suffix=self.mask_suffix,
        )

    def _announce_binary(self) -> None:
        if not self._announced:
            logger.warning(
                "Dataset '%s': masks in %s hold only 0 and 255; reading them as binary, 255 -> class 1 "
                "(pass ignore_label=255 if 255 really means 'ignore')",
                self.name,
                self.mask_dir,
            )
            self._announced = True

    def _stored_decision(self) -> dict | None:
        try:
            with open(os.path.join(self.label_dir, PARAMS_FILE)) as f:
                stored = json.load(f)
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return stored if stored.get("request") == self.request() else None

    def decide(self, pairs: Sequence[Pair], use_stored: bool = True) -> tuple[dict, list[Problem]]:
        """Resolve "auto" (binary 0/255 detection, number of classes) from the masks themselves."""
        problems: list[Problem] = []
        fmt = self.mask_format
        if fmt == "binary":
            return {"format": fmt, "num_classes": len(self.classes) if self.classes else 2}, problems
        if fmt == "palette":
            ids = [i for i in self.palette.values() if i != self.ignore_label]
            return {
                "format": fmt,
                "num_classes": len(self.classes) if self.classes else max(ids) + 1,
            }, problems
        stored = self._stored_decision() if use_stored else None
        if stored is not None:
            decision = {k: v for k, v in stored.items() if k != "request"}
            if decision["format"] == "binary_0_255":
                self._announce_binary()
            return decision, problems
        seen: set[int] = set()
        for pair in pairs:
            mask, problem = read_mask(pair.mask)
            if problem is not None:
                problems.append(problem)
                continue
            gray = _gray(mask)
            if gray is None:
                problems.append(
                    Problem(
                        pair.mask,
                        BAD_VALUES,
                        "colour mask: pass palette=[(r, g, b), ...] to map colours to classes",
                    )
                )
                continue
            seen.update(int(v) for v in np.unique(gray))
        if fmt == "auto" and not self.ignore_stated and (self.classes is None or len(self.classes) == 2):
            if 255 in seen and seen <= {0, 255}:
                self._announce_binary()
                return {"format": "binary_0_255", "num_classes": 2}, problems
        if self.classes is not None:
            n = len(self.classes)
        else:
            n = max([v for v in seen if v != self.ignore_label], default=0) + 1
            logger.info(
                "Dataset '%s': %d classes inferred from mask values %s", self.name, n, _show(sorted(seen))
            )
        return {"format": "class_ids", "num_classes": n}, problems

    # -- conversion ------------------------------------------------------------------------------

    def converter(self, decision: dict):
        fmt, n, ignore = decision["format"], decision["num_classes"], self.ignore_label

        def bad(pair, values, why=""):
            return None, Problem(
                pair.mask,
                BAD_VALUES,
                f"values {_show(values)} {why or f'are not classes 0..{n - 1} or ignore {ignore}'}",
            )

        def convert(mask: MaskArray, pair: Pair):
            if fmt == "binary":
                return foreground_by_threshold(mask, self.threshold).astype(np.uint8), None
            if fmt == "palette":
                rgb = _rgb(mask).reshape(-1, 3).astype(np.int64)
                keys = (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]
                uniq, inv = np.unique(keys, return_inverse=True)
                lut = {(r << 16) | (g << 8) | b: i for (r, g, b), i in self.palette.items()}
                unknown = [
                    (int(k) >> 16, (int(k) >> 8) & 255, int(k) & 255) for k in uniq if int(k) not in lut
                ]
                if unknown:
                    return bad(pair, unknown, "are colours not in the palette")
                mapped = np.array([lut[int(k)] for k in uniq], dtype=np.uint8)
                return mapped[inv].reshape(mask.values.shape[:2]), None
            gray = _gray(mask)
            if gray is None:
                return None, Problem(pair.mask, BAD_VALUES, "colour mask: pass palette=[(r, g, b), ...]")
            uniq = np.unique(gray)
            if fmt == "binary_0_255":
                extra = [int(v) for v in uniq if v not in (0, 255)]
                if extra:
                    return bad(pair, extra, "in a binary 0/255 dataset")
                return (gray == 255).astype(np.uint8), None
            extra = [int(v) for v in uniq if not (0 <= v < n or v == ignore)]
            if extra:
                return bad(pair, extra)
            return gray.astype(np.uint8), None

        return convert

    # -- loading ---------------------------------------------------------------------------------

    @property
    def what(self) -> str:
        return f"dataset '{self.name}' ({self.image_dir}, {self.mask_dir})"

    def entries(self) -> list[Entry]:
        pairs, pair_problems = self.pairs()
        decision, problems = self.decide(pairs)
        if problems:  # unreadable masks while deciding the format
            bad = report_or_raise(
                sorted(pair_problems + problems, key=problem_order),
                what=self.what,
                skip_bad_files=self.skip_bad_files,
                total=len(pairs),
            )
            pairs = [p for p in pairs if p.mask not in bad and p.image not in bad]
            pair_problems = []
        self.decision = decision
        return build_label_maps(
            pairs,
            self.label_dir,
            self.converter(decision),
            {"request": self.request(), **decision},
            what=self.what,
            pair_problems=pair_problems,
            skip_bad_files=self.skip_bad_files,
        )

    def semantic_records(self) -> list[dict]:
        return [
            {
                "file_name": e.pair.image,
                "sem_seg_file_name": e.pair.label,
                "height": e.height,
                "width": e.width,
                "image_id": i + 1,
            }
            for i, e in enumerate(self.entries())
        ]

    def instance_records(self, name: str, mode: str) -> list[dict]:
        entries = self.entries()
        return instance_records(entries, label_to_category={1: 0}, image_id=lambda i, e: i + 1, mode=mode)

    def class_names(self, n: int) -> list[str]:
        if self.classes is not None:
            return list(self.classes)
        if n == 2:
            return ["background", "foreground"]
        return [f"class_{i}" for i in range(n)]

    def validate(self) -> list[Problem]:
        """Every problem in the folder, nothing written."""
        pairs, pair_problems = self.pairs()
        decision, problems = self.decide(pairs, use_stored=False)
        bad = {p.mask for p in problems}
        pairs = [p for p in pairs if p.mask not in bad]
        return sorted(check_all(pairs, self.converter(decision), pair_problems) + problems, key=problem_order)


def _colors(n: int) -> list[list[int]]:
    rng = np.random.default_rng(0)
    base = [[60, 60, 60], [220, 20, 60], [0, 130, 200], [60, 180, 75], [255, 225, 25], [145, 30, 180]]
    return [base[i] if i < len(base) else rng.integers(0, 256, 3).tolist() for i in range(n)]


def register_folder_dataset(
    name: str,
    image_dir: str,
    mask_dir: str,
    *,
    classes: Sequence[str] | None = None,
    palette=None,
    ignore_label: int | None = None,
    mask_format: str = "auto",
    threshold: float = 0.4,
    image_extensions: Iterable[str] | None = None,
    mask_extensions: Iterable[str] | None = None,
    mask_suffix: str = "",
    label_dir: str | None = None,
    instances: str | bool = "auto",
    skip_bad_files: bool = False,
) -> list[str]:
    """Register a folder of images and masks as ``name`` (semantic) and ``name + "_instance"``.

    Args:
        classes: class names in id order (default: inferred; binary -> background/foreground).
        palette: colour masks: ``[(r, g, b), ...]`` (colour i = class i) or ``{(r, g, b): id}``.
        ignore_label: the mask value meaning "ignore" (default 255). Stating it turns off the
            0/255 binary detection.
        mask_format: "auto", "class_ids", "palette" or "binary" (threshold at ``threshold`` of
            the full range, for anti-aliased or lossy masks).
        mask_suffix: masks are named ``<image stem><mask_suffix>.<ext>`` (e.g. "_mask").
        instances: "auto" (an instance variant for 2-class datasets, one instance per image),
            "image", "components" (one instance per connected component) or False.
        skip_bad_files: leave bad files out, logging each and the count (default: raise).

    Masks are checked and label maps written now, so mistakes surface at this call; loading
    later re-checks only files that changed. Returns the registered names.
    """
    ds = FolderDataset(
        name,
        image_dir,
        mask_dir,
        classes=classes,
        palette=palette,
        ignore_label=ignore_label,
        mask_format=mask_format,
        threshold=threshold,
        image_extensions=image_extensions,
        mask_extensions=mask_extensions,
        mask_suffix=mask_suffix,
        label_dir=label_dir,
        instances=instances,
        skip_bad_files=skip_bad_files,
    )
    entries = ds.entries()
    n = ds.decision["num_classes"]
    names = ds.class_names(n)
    if len(names) != n:
        raise ValueError(f"{ds.what}: {len(names)} class names given for {n} classes")
    if not entries:
        raise ValueError(f"{ds.what}: no image/mask pairs found")
    for existing in (name, name + "_instance"):
        if existing in DatasetCatalog.list():
            logger.info("Re-registering dataset '%s'", existing)
            DatasetCatalog.remove(existing)
            MetadataCatalog.remove(existing)
    DatasetCatalog.register(name, ds.semantic_records)
    MetadataCatalog.get(name).set(
        stuff_classes=names,
        stuff_colors=_colors(n),
        ignore_label=ds.ignore_label,
        evaluator_type="sem_seg",
        image_root=ds.image_dir,
        sem_seg_root=ds.label_dir,
    )
    registered = [name]
    mode = {"auto": "image" if n == 2 else None, True: "image", False: None}.get(instances, instances)
    if mode is not None:
        if n != 2:
            raise ValueError(f"{ds.what}: instance variants need binary masks (2 classes), found {n} classes")
        inst = name + "_instance"
        DatasetCatalog.register(inst, partial(ds.instance_records, inst, mode))
        MetadataCatalog.get(inst).set(
            thing_classes=[names[1]],
            thing_colors=[_colors(2)[1]],
            thing_dataset_id_to_contiguous_id={1: 0},
            evaluator_type="coco",
            image_root=ds.image_dir,
        )
        registered.append(inst)
    return registered

