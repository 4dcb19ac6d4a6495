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
  ``mask_format="binary"`` thresholds any mask (anti-aliased, JPEG) at ``threshold`` of its
  "on" value: 1 for masks holding only values 0..3 (0/1 masks, also through JPEG), else the
  full range of its bit depth (255, 65535);
- cut-outs (RGBA or gray+alpha masks of one colour whose alpha varies): read from the alpha.

Label maps of class ids (0..K-1, ``ignore_label`` for ignored pixels) are written once into
``label_dir`` (default ``<mask_dir>_label_maps/<name>/``) and reused while the mask's bytes,
the options and the conversion code are unchanged.

What ``mask_format="auto"`` decides, from the values of *every* mask and each file's bit depth
(8-bit, 16-bit, 1-bit), so that no mask is silently mislabelled:

- every mask holds only 0 and its full value (0/255, 16-bit 0/65535): binary, full -> class 1;
- near-binary (two clusters near 0 and near full, >= 90% of the pixels within 10% of them,
  several distinct in-between values: lossy JPEG, anti-aliased edges): binary, foreground =
  value above ``threshold`` of the full range;
- 0/1 masks through lossy compression (JPEG: values 0..3, >= 90% of pixels 0 or 1): binary,
  foreground = value above ``threshold`` of 1;
- masks of 0/1 beside masks of 0/full (255) in one folder: an error naming one file of each
  (read as class ids, the 0/255 files' objects would become "ignore");
- otherwise class ids (value = class, ``ignore_label`` = ignore), accepted only when they form
  a plausible set: without ``classes`` the inferred ids 0..K-1 must all occur and K <= 32;
  a value that leaves ids unused (0/255 with a block of 128; 0/1 with a stray 7) is an error
  naming the files, values and the argument to pass. Values above 254 (16-bit class ids) do
  not fit the 8-bit label maps (255 = ignore) and are an error unless ``value_map`` maps them.
- RGB masks need ``palette``; they are an error otherwise.

Whatever the format, a dataset whose label maps all hold one class (every pixel foreground, or
every pixel background) is an error: it would train nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog

from semseg_heads.data.instances import instance_records
from semseg_heads.data.labelmaps import (
    BAD_VALUES,
    COLOUR_WITHOUT_PALETTE,
    EMPTY_FOLDER,
    IMAGES_8BIT_DIR,
    LABEL_CODE_VERSION,
    MIXED_ENCODINGS,
    ONE_CLASS,
    SUSPICIOUS_VALUES,
    DatasetError,
    Entry,
    MaskArray,
    Pair,
    Problem,
    build_label_maps,
    check_all,
    file_digest,
    foreground_by_threshold,
    label_values,
    pair_files,
    problem_order,
    read_image_size,
    read_mask,
    report_or_raise,
    threshold_values,
    write_json_atomic,
)

logger = logging.getLogger(__name__)

MASK_FORMATS = ("auto", "class_ids", "palette", "binary")
DEFAULT_IGNORE = 255
#: Without ``classes``, "auto" infers at most this many classes (more: pass ``classes``).
MAX_INFERRED_CLASSES = 32
#: Near-binary masks: the share of pixels allowed outside the bands within 10% of 0 and of full.
NEAR_BINARY_MAX_MID = 0.10
#: The last "auto" decision and the digest of the masks it was made from, beside the label maps.
DECISION_FILE = "_label_decision.json"
#: A mask whose values are all 0..LOW_MAX is a 0/1 mask (2 and 3: lossy compression noise).
LOW_MAX = 3


@dataclass(frozen=True)
class _Stat:
    """The values of one mask file (gray or palette indices) and what its file said."""

    path: str
    full: float
    mode: str
    values: np.ndarray
    counts: np.ndarray
    lossy: bool

    @property
    def low(self) -> bool:  # a 0/1 mask, maybe with lossy noise
        return self.full > 1 and self.mode != "P" and 1 <= self.values.max() <= LOW_MAX

    @property
    def high(self) -> bool:  # a 0/full mask, maybe lossy or anti-aliased
        return (
            self.full > 1
            and self.mode != "P"
            and self.values.max() >= 0.9 * self.full
            and int(self.counts[(self.values > 0.1 * self.full) & (self.values < 0.9 * self.full)].sum())
            <= NEAR_BINARY_MAX_MID * int(self.counts.sum())
        )


def on_value(mask: MaskArray) -> float:
    """The value that means "object" in a binary mask: 1 for masks of 0..``LOW_MAX`` (0/1 masks,
    JPEG noise included), else the full range of the file's bit depth."""
    v = threshold_values(mask)
    top = float(v.max()) if v.size else 0.0
    return 1.0 if mask.full_range > 1 and top <= LOW_MAX else mask.full_range


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


def _mid_share(gray: np.ndarray, full: float) -> float:
    f = gray.astype(np.float64) / full
    return float(((f > 0.1) & (f < 0.9)).mean()) if f.size else 0.0


def _mixed_encodings(stats: Sequence[_Stat], where: str) -> Problem | None:
    """0/1 masks beside 0/255 masks: read as class ids, the second kind's objects would become
    "ignore" (255); refused naming one file of each kind."""
    low = [st for st in stats if st.low]
    high = [st for st in stats if st.high]
    if not (low and high):
        return None
    a, b = low[0], high[0]
    full = int(b.full)
    return Problem(
        where,
        MIXED_ENCODINGS,
        f"{len(low)} mask(s) hold 0/1 (e.g. {a.path}: values {_show(a.values.tolist(), 6)}) and "
        f"{len(high)} hold 0/{full} (e.g. {b.path}: values {_show(b.values.tolist(), 6)}); read as "
        f"class ids, the objects of the 0/{full} masks would become 'ignore'. Pass --mask-format "
        f"binary (mask_format='binary') to read each mask as binary from its own values, or "
        f"--ignore-label {full} (ignore_label={full}) if {full} does mean 'ignore'",
    )


def _binary_decision(stats: Sequence[_Stat]) -> dict | None:
    """The binary reading of a folder's masks, or None when they are not binary or near-binary."""
    stats = [s for s in stats if s.full > 1]  # 1-bit masks are 0/1 class ids already
    if not stats:
        return None
    seen = _show(sorted({int(v) for st in stats for v in st.values.tolist()}), 6)
    fulls = {int(st.full) for st in stats}
    if all(set(st.values.tolist()) <= {0, st.full} for st in stats) and any(
        st.full in st.values for st in stats
    ):
        return {"format": "binary_exact", "num_classes": 2, "full": max(fulls), "seen": seen}
    if any(st.mode == "P" for st in stats):  # palette indices are no intensities
        return None
    with_values = [st for st in stats if st.values.max() > 0]
    if (
        with_values
        and all(st.low for st in with_values)
        and all(st.lossy for st in with_values if st.values.max() > 1)
        and any(st.values.max() > 1 for st in with_values)
    ):
        # 0/1 masks through JPEG: 0, 1 and a few 2s (3s) where compression rang at the edges.
        in_01 = sum(int(st.counts[st.values <= 1].sum()) for st in stats)
        if in_01 >= (1 - NEAR_BINARY_MAX_MID) * sum(int(st.counts.sum()) for st in stats):
            return {"format": "binary", "num_classes": 2, "seen": seen, "lossy_low": True}
    lo = hi = total = 0
    between: set[float] = set()
    top: set[float] = set()
    for st in stats:
        f = st.values.astype(np.float64) / st.full
        lo += int(st.counts[f <= 0.1].sum())
        hi += int(st.counts[f >= 0.9].sum())
        total += int(st.counts.sum())
        between.update(f[(f > 0) & (f < 1)].tolist())
        top.update(f[f >= 0.9].tolist())
    near = lo and hi and (lo + hi) >= (1 - NEAR_BINARY_MAX_MID) * total
    # Several in-between values (noise, edges), and not just 255 at the top as in class ids
    # with 255 = ignore: a few exact extra values are strays, reported as class ids.
    if near and len(between) >= 3 and len(top) >= 2:
        return {"format": "binary_near", "num_classes": 2, "seen": seen}
    return None


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
        value_map: Mapping[int, int] | None = None,
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
        if self.classes is not None and len(self.classes) > 255:
            raise ValueError(
                f"{len(self.classes)} classes given; the label maps are 8-bit with 255 = ignore, "
                "so at most 255 classes fit"
            )
        self.value_map = {int(k): int(v) for k, v in (value_map or {}).items()}
        for k, v in self.value_map.items():
            if not (0 <= v <= 255):
                raise ValueError(f"value_map maps {k} to {v}; class ids are 0..254 (255 = ignore)")
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
        self.skipped: list[Problem] = []  # the bad files left out (skip_bad_files)
        self.converted_images = 0  # 16-bit images read through 8-bit copies
        self.undecided = False  # validation found the masks' encoding refused (mixed, implausible)
        self._announced = False
        self._decided_from: str | None = None  # digest of the masks "auto" last read

    # -- which format, how many classes ------------------------------------------------------

    def request(self) -> dict:
        return {
            "mask_format": self.mask_format,
            "classes": self.classes,
            "palette": sorted([list(c), i] for c, i in self.palette.items()) if self.palette else None,
            "ignore_label": self.ignore_label if self.ignore_stated else None,
            "threshold": self.threshold,
            "value_map": sorted(self.value_map.items()) or None,
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

    def reading(self, decision: dict) -> str:
        """How the masks are read, in words: the encoding and which values make which class."""
        fmt, seen = decision["format"], decision.get("seen", "")
        of = f" (values found: {seen})" if seen else ""
        if fmt == "binary_exact":
            full = decision["full"]
            return (
                f"binary 0/{full}{of}: 0 -> class 0, {full} -> class 1 (pass --ignore-label {full} "
                f"if {full} means 'ignore')"
            )
        if fmt == "binary_near":
            return (
                f"binary with lossy or anti-aliased values{of}: class 1 = value above "
                f"{self.threshold:g} x the full range (--mask-threshold), else class 0"
            )
        if fmt == "binary":
            how = "0/1 masks through lossy compression" if decision.get("lossy_low") else "binary"
            return (
                f"{how}{of}: class 1 = value above {self.threshold:g} x the mask's 'on' value "
                f"(--mask-threshold; 'on' is 1 for masks of values 0..{LOW_MAX}, else the full "
                "range, 255 for 8-bit), else class 0"
            )
        if fmt == "palette":
            colours = ", ".join(f"{c} -> {i}" for c, i in sorted(self.palette.items(), key=lambda x: x[1]))
            return f"colour masks by palette: {colours}"
        mapped = "".join(f", value {k} -> class {v}" for k, v in sorted(self.value_map.items()))
        return f"class ids{of}: value = class id{mapped}, {self.ignore_label} = ignore"

    def describe(self, pairs: int, names: Sequence[str] | None = None) -> str:
        """What registration (or validation) decided, for the command line to print: the pairs,
        how masks are read, the classes, 16-bit images read through 8-bit copies, skipped files."""
        decision = self.decision or {}
        lines = [
            f"Dataset '{self.name}': {pairs} image/mask pair(s), images {self.image_dir}, "
            f"masks {self.mask_dir}"
        ]
        if self.undecided or not decision:
            lines.append("  masks: no reading decided, see the problem(s) below")
        else:
            names = names or self.class_names(decision["num_classes"])
            lines.append(f"  masks read as {self.reading(decision)}")
            lines.append("  classes: " + ", ".join(f"{i} '{n}'" for i, n in enumerate(names)))
        if self.converted_images:
            lines.append(
                f"  {self.converted_images} 16-bit image(s) scaled to 8 bits as viewers show them "
                f"(copies in {os.path.join(self.label_dir, IMAGES_8BIT_DIR)})"
            )
        if self.skipped:
            lines.append(f"  {len(self.skipped)} bad file(s) left out (--skip-bad-files):")
            lines += [f"    {p}" for p in self.skipped]
        return "\n".join(lines)

    def _log_reading(self, decision: dict) -> None:
        if not self._announced:
            self._announced = True
            # A guess that gives values a meaning they might not have (255 -> class 1) is a warning.
            guessed = decision["format"] in ("binary_exact", "binary_near") or decision.get("lossy_low")
            logger.log(
                logging.WARNING if guessed else logging.INFO,
                "Dataset '%s': masks in %s read as %s",
                self.name,
                self.mask_dir,
                self.reading(decision),
            )

    def _stored_decision(self, folder_key: str) -> dict | None:
        try:
            with open(os.path.join(self.label_dir, DECISION_FILE)) as f:
                stored = json.load(f)
        except (OSError, json.JSONDecodeError):
            return None
        if (
            not isinstance(stored, dict)
            or stored.get("request") != self.request()
            or stored.get("masks") != folder_key
            or stored.get("code_version") != LABEL_CODE_VERSION
        ):
            return None
        return stored["decision"]

    def _folder_key(self, pairs: Sequence[Pair]) -> str | None:
        """Digest of every mask's bytes: a decision made from other masks is not reused."""
        h = hashlib.sha1()
        try:
            for pair in pairs:
                h.update(f"{pair.stem}\0{file_digest(pair.mask)}\0".encode())
        except OSError:
            return None
        return h.hexdigest()

    def _mapped(self, values: np.ndarray) -> np.ndarray:
        if not self.value_map:
            return values
        out = values.astype(np.int64).copy()
        for src, dst in self.value_map.items():
            out[values == src] = dst
        return out

    def decide(self, pairs: Sequence[Pair], use_stored: bool = True) -> tuple[dict, list[Problem]]:
        """Resolve "auto" from every mask of the folder and its bit depth; see ``AUTO_RULES``.

        Returns the decision (format, number of classes) and the problems found: unreadable
        masks, colour masks without a palette, and value sets that form no plausible class set.
        """
        problems: list[Problem] = []
        fmt = self.mask_format
        if fmt == "palette":
            ids = [i for i in self.palette.values() if i != self.ignore_label]
            return {
                "format": fmt,
                "num_classes": len(self.classes) if self.classes else max(ids) + 1,
            }, problems
        folder_key = self._folder_key(pairs)
        stored = self._stored_decision(folder_key) if use_stored and folder_key else None
        self._decided_from = None  # set once a decision is made from the masks themselves
        if stored is not None:
            self._log_reading(stored)
            return stored, problems
        stats: list[_Stat] = []
        for pair in pairs:
            mask, problem = read_mask(pair.mask)
            if problem is not None:
                problems.append(problem)
                continue
            gray = _gray(mask) if fmt != "binary" else threshold_values(mask)
            if gray is None:
                problems.append(
                    Problem(
                        pair.mask,
                        COLOUR_WITHOUT_PALETTE,
                        "an RGB mask: pass palette=[(r, g, b), ...] (command line: --palette r,g,b ...) "
                        "to map colours to classes, or mask_format='binary' to threshold",
                    )
                )
                continue
            values, counts = np.unique(gray, return_counts=True)
            stats.append(_Stat(pair.mask, mask.full_range, mask.mode, values, counts, mask.lossy))
        decision = None
        if fmt == "binary":
            seen = _show(sorted({int(v) for st in stats for v in st.values.tolist()}), 6)
            decision = {"format": fmt, "num_classes": len(self.classes) if self.classes else 2, "seen": seen}
        elif not self.ignore_stated and not self.value_map:
            mixed = _mixed_encodings(stats, self.mask_dir)
            if mixed is not None:
                problems.append(mixed)
            elif fmt == "auto" and (self.classes is None or len(self.classes) == 2):
                decision = _binary_decision(stats)
        if decision is None:
            decision, more = self._class_id_decision(stats)
            problems += more
        self._decided_from = folder_key
        if not problems:
            self._log_reading(decision)
        return decision, problems

    def _class_id_decision(self, stats) -> tuple[dict, list[Problem]]:
        problems: list[Problem] = []
        ignore = self.ignore_label
        where: dict[int, list[tuple[str, int]]] = {}
        for st in stats:
            path, values, counts = st.path, st.values, st.counts
            if values.dtype.kind == "f" and not np.array_equal(values, np.round(values)):
                problems.append(
                    Problem(
                        path,
                        SUSPICIOUS_VALUES,
                        f"fractional values ({_show(values.tolist(), 4)}) are no class ids; "
                        "pass mask_format='binary' (--mask-format binary) to threshold them",
                    )
                )
                continue
            for v, c in zip(self._mapped(values).tolist(), counts.tolist()):
                where.setdefault(int(v), []).append((path, int(c)))
        wide = sorted(v for v in where if v > 254 and v != ignore)
        for path in sorted({p for v in wide for p, _ in where[v]}):
            here = [v for v in wide if any(p == path for p, _ in where[v])]
            problems.append(
                Problem(
                    path,
                    SUSPICIOUS_VALUES,
                    f"value(s) {_show(here)} do not fit the 8-bit label maps (class ids 0..254, "
                    f"255 = ignore); map them with value_map={{{here[0]}: <class id>, ...}} "
                    f"(command line: --value-map {here[0]}=<id>)",
                )
            )
        ids = sorted(v for v in where if v != ignore and v <= 254)
        if self.classes is not None:
            n = len(self.classes)
            return {"format": "class_ids", "num_classes": n, "seen": _show(sorted(where))}, problems
        n = (max(ids) + 1) if ids else 1
        missing = sorted(set(range(n)) - set(ids))
        if missing or n > MAX_INFERRED_CLASSES:
            cut = missing[0] if missing else MAX_INFERRED_CLASSES
            odd = [v for v in ids if v > cut]
            usual = [v for v in ids if v <= cut] + ([ignore] if ignore in where else [])
            advice = (
                f"if they are real class ids pass classes=[...] with all {n} names (command line: "
                "--classes a,b,...); if these masks are binary or lossy, mask_format='binary' "
                "(--mask-format binary) thresholds them; otherwise fix the file(s)"
            )
            gap = f"ids {missing[0]}..{missing[-1]} never occur" if missing else f"more than {cut} classes"
            for path in sorted({p for v in odd for p, _ in where[v]}):
                here = [(v, c) for v in odd for p, c in where[v] if p == path]
                problems.append(
                    Problem(
                        path,
                        SUSPICIOUS_VALUES,
                        f"value(s) {_show(f'{v} ({c} px)' for v, c in here)} would make {n} classes "
                        f"({gap}) in a folder whose masks otherwise hold {_show(usual)}; {advice}",
                    )
                )
        seen = _show(sorted(where))
        logger.info("Dataset '%s': %d classes inferred from mask values %s", self.name, n, seen)
        return {"format": "class_ids", "num_classes": n, "seen": seen}, problems

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
            if fmt == "binary":  # relative to the values the mask holds: 0/1 or 0/full
                return foreground_by_threshold(mask, self.threshold, on_value(mask)).astype(np.uint8), None
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
                return None, Problem(
                    pair.mask, COLOUR_WITHOUT_PALETTE, "an RGB mask: pass palette=[(r, g, b), ...]"
                )
            if fmt == "binary_near":
                mid = _mid_share(gray, mask.full_range)
                if mid > NEAR_BINARY_MAX_MID:
                    return bad(
                        pair,
                        np.unique(gray).tolist(),
                        f"are not a near-binary mask ({mid:.0%} of its pixels are neither near 0 nor "
                        "near the full value) in a folder read as binary; pass --mask-format binary "
                        "(mask_format='binary') to threshold every mask at --mask-threshold",
                    )
                return foreground_by_threshold(mask, self.threshold).astype(np.uint8), None
            uniq = np.unique(gray)
            if fmt == "binary_exact":
                extra = [int(v) for v in uniq if v not in (0, mask.full_range)]
                if extra:
                    return bad(pair, extra, f"in a binary 0/{int(mask.full_range)} dataset")
                return (gray == mask.full_range).astype(np.uint8), None
            gray = self._mapped(gray)
            uniq = np.unique(gray)
            extra = [v for v in uniq.tolist() if not (v == int(v) and (0 <= v < n or v == ignore))]
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
        if not pairs and not pair_problems:
            raise DatasetError(f"{self.what}: {EMPTY_FOLDER}: no image/mask pairs found")
        decision, problems = self.decide(pairs)
        self.skipped = []
        if problems:
            folder_wide = any(p.path == self.mask_dir for p in problems)
            if not self.skip_bad_files or folder_wide:
                # Count every problem (images included) before stopping, as validation would.
                report_or_raise(
                    self.validate(),
                    what=self.what,
                    skip_bad_files=False,
                    total=len(pairs),
                    skippable=not folder_wide,
                )
            self.skipped = sorted(pair_problems + problems, key=problem_order)
            bad = report_or_raise(self.skipped, what=self.what, skip_bad_files=True, total=len(pairs))
            pairs = [p for p in pairs if p.mask not in bad and p.image not in bad]
            pair_problems = []
            decision, problems = self.decide(pairs, use_stored=False)
            if problems:
                report_or_raise(problems, what=self.what, skip_bad_files=False, total=len(pairs))
        self.decision = decision
        entries = build_label_maps(
            pairs,
            self.label_dir,
            self.converter(decision),
            {"request": self.request(), **decision},
            what=self.what,
            pair_problems=pair_problems,
            skip_bad_files=self.skip_bad_files,
            skipped=self.skipped,
        )
        values = label_values(self.label_dir, entries)
        one_class = self._one_class(decision, [v for vs in values.values() for v in vs])
        if entries and one_class is not None:
            report_or_raise(
                [one_class], what=self.what, skip_bad_files=False, total=len(pairs), skippable=False
            )
        self.converted_images = sum(1 for e in entries if e.image)
        if self._decided_from:  # the next start skips reading every mask while none changed
            write_json_atomic(
                {
                    "request": self.request(),
                    "masks": self._decided_from,
                    "code_version": LABEL_CODE_VERSION,
                    "decision": decision,
                },
                os.path.join(self.label_dir, DECISION_FILE),
            )
        return entries

    def semantic_records(self) -> list[dict]:
        return [
            {
                "file_name": e.file_name,
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

    def _one_class(self, decision: dict, values: Iterable[int]) -> Problem | None:
        """A problem when every label map holds one class only (or nothing but 'ignore')."""
        found = sorted({int(v) for v in values} - {self.ignore_label})
        if len(found) >= 2:
            return None
        names = self.class_names(decision["num_classes"])
        what = f"only class {found[0]} ('{names[found[0]]}')" if found else "only 'ignore'"
        if decision["format"].startswith("binary"):
            fix = (
                f"if the objects lie on the other side of the threshold, change --mask-threshold "
                f"(now {self.threshold:g}); otherwise re-save the masks with the objects in a value of "
                "their own"
            )
        else:
            fix = "re-save the masks with the objects in a value of their own, or pass --mask-format binary"
        return Problem(
            self.mask_dir,
            ONE_CLASS,
            f"every label map holds {what}, with the masks read as {self.reading(decision)}; a dataset "
            f"of one class trains nothing: {fix}",
        )

    def validate(self) -> list[Problem]:
        """Every problem in the folder, nothing written."""
        pairs, pair_problems = self.pairs()
        if not pairs and not pair_problems:
            return [Problem(self.mask_dir, EMPTY_FOLDER, f"no image/mask pairs in {self.image_dir}")]
        decision, problems = self.decide(pairs, use_stored=False)
        self.decision = decision
        self.undecided = any(p.kind in (MIXED_ENCODINGS, SUSPICIOUS_VALUES) for p in problems)
        bad = {p.path for p in problems}
        rest = [p for p in pairs if p.mask not in bad]
        values: set[int] = set()
        self.converted_images = 0

        def seen(pair: Pair, checked) -> None:
            values.update(int(v) for v in np.unique(checked.label))
            self.converted_images += checked.image_8bit is not None

        checked = check_all(rest, self.converter(decision), pair_problems, on_checked=seen)
        if values and not problems:
            one_class = self._one_class(decision, values)
            if one_class is not None:
                problems.append(one_class)
        # Images of the pairs whose mask failed are still checked, so every bad file is named.
        for pair in pairs:
            if pair.mask in bad:
                _, problem = read_image_size(pair.image)
                if problem is not None:
                    checked.append(problem)
        return sorted(checked + problems, key=problem_order)


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
    value_map: Mapping[int, int] | None = None,
    colors: Sequence[Sequence[int]] | None = None,
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
        value_map: ``{mask value: class id}`` applied before anything else (class-id masks),
            e.g. for 16-bit ids above 254 that do not fit the 8-bit label maps.
        colors: ``(r, g, b)`` per class for drawing (default: a fixed set).

    ``mask_format="auto"`` follows the rules in this module's docstring.

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
        value_map=value_map,
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
    if colors is not None:
        colors = [[int(c) for c in color] for color in colors]
        if len(colors) != n or any(len(c) != 3 for c in colors):
            raise ValueError(
                f"{ds.what}: {len(colors)} colours given for {n} classes; give one r,g,b per class"
            )
    summary = ds.describe(len(entries), names)
    logger.info(summary)
    DatasetCatalog.register(name, ds.semantic_records)
    MetadataCatalog.get(name).set(
        registration=summary,  # the command-line tools print it
        stuff_classes=names,
        stuff_colors=colors or _colors(n),
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
            thing_colors=[(colors or _colors(2))[1]],
            thing_dataset_id_to_contiguous_id={1: 0},
            evaluator_type="coco",
            image_root=ds.image_dir,
        )
        registered.append(inst)
    return registered
