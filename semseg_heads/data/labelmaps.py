"""Image/mask pairing, strict file reading, and the 0..K label maps cached next to the data.

Detectron2's ``SemSegEvaluator`` and ``DatasetMapper`` read ``sem_seg_file_name`` as an 8-bit map
of class ids in which ``ignore_label`` (255) is ignored. Masks as people store them (0/255
binary, anti-aliased, JPEG, RGB, palette, 16-bit) are therefore converted once into lossless
grayscale PNG label maps in a folder beside the masks, written atomically and reused while their
mask's bytes (size + SHA-1), their image's size and modification time, the conversion settings
and :data:`LABEL_CODE_VERSION` are unchanged. Modification times alone are not trusted for masks:
``cp -p``, ``unzip`` and ``rsync -t`` restore a corrected mask with an *older* time.

Images and masks are checked as Detectron2's ``read_image`` will read them: EXIF orientation
applied (a photo stored turned, with the mask drawn on the shown photo, passes), and 16-bit
grayscale images, which its ``convert("RGB")`` would clip to white, get an 8-bit copy (scaled as
viewers show them) under ``<label_dir>/images_8bit/`` that the records point to.

Every check here reports the file it concerns; nothing is dropped silently: a loader either
raises :class:`DatasetError` naming the first bad file or, when asked to skip bad files, logs each
skipped file and the count.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from detectron2.data.detection_utils import _apply_exif_orientation, convert_PIL_to_numpy
from detectron2.data.detection_utils import read_image as read_image_d2
from iopath.common.file_io import file_lock
from PIL import Image, ImageFile, UnidentifiedImageError

from semseg_heads.utils.io import IMAGE_EXTENSIONS, write_json_atomic, write_png_atomic

logger = logging.getLogger(__name__)

PARAMS_FILE = "_label_params.json"
INDEX_FILE = "_label_index.json"
#: Part of every label-map cache key: bump it when a conversion rule changes so old maps are rebuilt.
LABEL_CODE_VERSION = 3
#: Images Detectron2's ``read_image`` would show wrongly (``convert("RGB")`` clips 16-bit values
#: to 255, a white square) are written once as 8-bit PNGs here, under the label map folder.
IMAGES_8BIT_DIR = "images_8bit"
#: Formats whose compression changes pixel values (a 0/1 mask through JPEG holds 0, 1, 2).
LOSSY_FORMATS = ("JPEG", "MPO", "WEBP")

# Problem kinds, in the words the validation report uses.
IMAGE_WITHOUT_MASK = "image without mask"
MASK_WITHOUT_IMAGE = "mask without image"
DUPLICATE_STEM = "duplicate file stem"
NON_INTEGER_ID = "non-integer id"
UNREADABLE = "unreadable file"
TRUNCATED = "truncated file"
SIZE_MISMATCH = "size mismatch"
BAD_VALUES = "mask values that map to no class"
EMPTY_FILE = "zero-byte file"
COLOUR_WITHOUT_PALETTE = "colour mask without palette"
SUSPICIOUS_VALUES = "implausible mask values"
EMPTY_FOLDER = "empty folder"
IMAGE_MODE = "image Detectron2 cannot read as shown"
MIXED_ENCODINGS = "masks mixing encodings"
ONE_CLASS = "every mask one class"


@dataclass(frozen=True)
class Problem:
    """One defect of one file."""

    path: str
    kind: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.kind}: {self.path}" + (f" ({self.detail})" if self.detail else "")


class DatasetError(ValueError):
    """A dataset folder has bad files; ``problems`` lists every one found."""

    def __init__(self, message: str, problems: Sequence[Problem] = ()):
        super().__init__(message)
        self.problems = list(problems)


@dataclass(frozen=True)
class Pair:
    """An image, its mask and where its label map lives (``label`` may not exist yet)."""

    stem: str
    image: str
    mask: str
    label: str


@dataclass
class Entry:
    """A pair whose label map is written and checked; ``height``/``width`` of the image as
    Detectron2 reads it (EXIF orientation applied); ``image``: an 8-bit copy of a 16-bit image
    for Detectron2 to read, "" when the image itself reads right."""

    pair: Pair
    height: int
    width: int
    image: str = ""

    @property
    def file_name(self) -> str:
        """The image file Detectron2 reads for this pair."""
        return self.image or self.pair.image


@dataclass
class MaskArray:
    """Raw mask pixels plus what the file said about them.

    ``values`` is HxW (grayscale, palette indices, 16-bit) or HxWx3 (colour);
    ``full_range`` is the value of "fully on" for this file's bit depth.
    """

    values: np.ndarray
    mode: str
    full_range: float
    palette_rgb: np.ndarray | None = field(default=None, repr=False)
    lossy: bool = False  # stored in a lossy format (JPEG, WebP)


def _natural_key(stem: str):
    # Integer ids sort numerically ("2" before "10"), as the Chair Segments loader does.
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)


def list_files(folder: str, extensions: Iterable[str] | None) -> dict[str, list[str]]:
    """File stem -> paths in ``folder`` with one of ``extensions`` (case-insensitive)."""
    exts = tuple(
        e.lower() if e.startswith(".") else "." + e.lower() for e in (extensions or IMAGE_EXTENSIONS)
    )
    found: dict[str, list[str]] = {}
    with os.scandir(folder) as it:
        for de in it:
            if de.name.startswith(".") or not de.is_file():
                continue
            stem, ext = os.path.splitext(de.name)
            if ext.lower() in exts:
                found.setdefault(stem, []).append(de.path)
    return found


def pair_files(
    image_dir: str,
    mask_dir: str,
    label_dir: str,
    *,
    image_extensions: Iterable[str] | None = None,
    mask_extensions: Iterable[str] | None = None,
    integer_ids: bool = False,
    mask_suffix: str = "",
) -> tuple[list[Pair], list[Problem]]:
    """Pair images and masks by file stem; report every file that has no partner.

    Pairs come sorted by id (numerically for integer stems). ``integer_ids`` makes a stem that
    is not a non-negative integer a problem, as the Chair Segments layout requires.
    ``mask_suffix`` (e.g. "_mask") is what mask stems add to their image's stem.
    """
    for folder, what in ((image_dir, "image"), (mask_dir, "mask")):
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"{what} folder '{folder}' does not exist")
    images = list_files(image_dir, image_extensions)
    masks = list_files(mask_dir, mask_extensions)
    if mask_suffix:
        one_folder = os.path.abspath(image_dir) == os.path.abspath(mask_dir)
        renamed: dict[str, list[str]] = {}
        for stem, paths in masks.items():
            if stem.endswith(mask_suffix):
                renamed.setdefault(stem[: -len(mask_suffix)], []).extend(paths)
            elif not one_folder:  # in one folder, the files without the suffix are the images
                renamed.setdefault(stem + "\0no-suffix", []).extend(paths)
        masks = renamed
        if one_folder:  # masks are not images
            images = {k: v for k, v in images.items() if not k.endswith(mask_suffix)}
    problems: list[Problem] = []
    pairs: list[Pair] = []
    for stem in sorted(set(images) | set(masks), key=_natural_key):
        bad = False
        for paths, what in ((images.get(stem, []), "images"), (masks.get(stem, []), "masks")):
            if len(paths) > 1:
                problems.append(Problem(sorted(paths)[0], DUPLICATE_STEM, f"{what} {sorted(paths)} share it"))
                bad = True
        if stem not in masks:
            problems.append(Problem(images[stem][0], IMAGE_WITHOUT_MASK, f"no '{stem}.*' in {mask_dir}"))
            continue
        if stem not in images:
            problems.append(
                Problem(
                    masks[stem][0], MASK_WITHOUT_IMAGE, f"no image '{stem.split(chr(0))[0]}.*' in {image_dir}"
                )
            )
            continue
        if integer_ids and not re.fullmatch(r"\d+", stem):
            problems.append(
                Problem(images[stem][0], NON_INTEGER_ID, f"file name '{stem}' must be an integer id")
            )
            bad = True
        if not bad:
            pairs.append(Pair(stem, images[stem][0], masks[stem][0], os.path.join(label_dir, stem + ".png")))
    return pairs, problems


#: What a complete file ends with, for the formats that have an end marker.
_END_MARKERS = {"PNG": b"IEND\xaeB`\x82", "JPEG": b"\xff\xd9"}


def _open_fully(path: str) -> tuple[Image.Image | None, Problem | None]:
    try:
        if os.path.getsize(path) == 0:
            return None, Problem(path, EMPTY_FILE, "the file is empty (0 bytes)")
        im = Image.open(path)
        im.load()  # raises on a truncated file, unless another library relaxed PIL for the process
        marker = _END_MARKERS.get(im.format)
        if ImageFile.LOAD_TRUNCATED_IMAGES and marker and not _ends_with(path, marker):
            # PIL then fills the rest of a truncated image silently: check the end marker.
            return None, Problem(path, TRUNCATED, f"image file is truncated (no {im.format} end marker)")
        return im, None
    except UnidentifiedImageError as e:
        return None, Problem(path, UNREADABLE, f"not an image PIL can read: {e}")
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError, Image.DecompressionBombError) as e:
        msg = str(e)
        kind = TRUNCATED if ("truncated" in msg or "broken" in msg or "CRC" in msg) else UNREADABLE
        return None, Problem(path, kind, msg)


def _ends_with(path: str, marker: bytes, tail: int = 1024) -> bool:
    """Whether ``marker`` is in the file's last ``tail`` bytes (a few trailing bytes, as some
    cameras write after a JPEG's end, are tolerated)."""
    with open(path, "rb") as f:
        f.seek(max(0, os.path.getsize(path) - tail))
        return marker in f.read()


def _as_shown(im: Image.Image) -> Image.Image:
    # Detectron2's own EXIF step, so every size checked here is the size training reads.
    return _apply_exif_orientation(im)


def image_8bit(im: Image.Image, path: str) -> tuple[Image.Image | None, Problem | None]:
    """A 16-bit grayscale image (PIL ``I;16*``, or ``I`` within 0..65535) scaled to 8 bits as
    viewers show it (value * 255 / 65535); None for images Detectron2 reads right as they are
    (its ``convert("RGB")`` clips 16-bit values to 255). Float and 32-bit images are a problem."""
    if not (im.mode.startswith("I") or im.mode == "F"):
        return None, None
    values = np.asarray(im).astype(np.float64)
    if im.mode == "F" or (values.size and (values.min() < 0 or values.max() > 65535)):
        found = f"{values.min():g}..{values.max():g}" if values.size else "no pixels"
        return None, Problem(
            path,
            IMAGE_MODE,
            f"a {'floating-point' if im.mode == 'F' else '32-bit'} image (PIL mode {im.mode}, values "
            f"{found}) that viewers show in no one way; save it as an 8- or 16-bit PNG",
        )
    return Image.fromarray(np.round(values * (255.0 / 65535.0)).astype(np.uint8), "L"), None


def read_image_as_shown(path: str, format: str = "BGR") -> np.ndarray:
    """Detectron2's ``read_image`` (EXIF applied, ``format`` channels), except that a 16-bit
    grayscale image is scaled to 8 bits as viewers show it, where Detectron2's ``convert`` clips
    it to white; a floating-point or 32-bit image raises ``ValueError`` naming the file. For
    images given straight to a model (``tools/demo.py``), as registration does for datasets."""
    with Image.open(path) as im:
        im.load()
        shown = _as_shown(im)
        im8, problem = image_8bit(shown, path)
    if problem is not None:
        raise ValueError(str(problem))
    if im8 is None:
        return read_image_d2(path, format=format)
    return convert_PIL_to_numpy(im8, format)


def read_image(path: str) -> tuple[Image.Image | None, Problem | None]:
    """Decode the whole image (so truncation is caught), EXIF orientation applied as Detectron2
    applies it; an image of a mode Detectron2 cannot read as shown, and no 16-bit one, is a
    problem."""
    im, problem = _open_fully(path)
    if problem:
        return None, problem
    shown = _as_shown(im)
    _, problem = image_8bit(shown, path)
    return (None, problem) if problem else (shown, None)


def read_image_size(path: str) -> tuple[tuple[int, int] | None, Problem | None]:
    """``((height, width), None)`` of an image as Detectron2 reads it (see :func:`read_image`)."""
    im, problem = read_image(path)
    if problem:
        return None, problem
    return (im.height, im.width), None


def read_mask(path: str) -> tuple[MaskArray | None, Problem | None]:
    """Read a mask file strictly, keeping its raw values and bit depth."""
    im, problem = _open_fully(path)
    if problem:
        return None, problem
    lossy = im.format in LOSSY_FORMATS and not (im.format == "WEBP" and im.info.get("lossless"))
    im = _as_shown(im)  # drawn on the photo as a viewer shows it, as the photo is read
    mode = im.mode
    palette = None
    if mode == "1":
        values, full = np.asarray(im, dtype=np.uint8), 1.0
    elif mode == "L":
        values, full = np.asarray(im), 255.0
    elif mode == "P":
        values, full = np.asarray(im), 255.0
        pal = np.asarray((im.getpalette() or [])[:768], dtype=np.uint8).reshape(-1, 3)
        palette = np.zeros((256, 3), np.uint8)
        palette[: len(pal)] = pal
    elif mode in ("LA", "La"):
        gray, alpha = np.asarray(im.getchannel("L")), np.asarray(im.getchannel("A"))
        # Constant gray and a varying alpha: the alpha channel marks the object.
        cut_out = gray.size and gray.min() == gray.max() and alpha.min() != alpha.max()
        values, full, mode = (alpha if cut_out else gray), 255.0, "L"
    elif mode.startswith("I;16"):
        values, full = np.asarray(im, dtype=np.int32), 65535.0
    elif mode == "I":
        values = np.asarray(im, dtype=np.int64)
        full = 255.0 if values.size and values.max() <= 255 else 65535.0
    elif mode == "F":
        values, full = np.asarray(im, dtype=np.float32), 1.0
    elif mode in ("RGBA", "PA") and _alpha_marks(im):
        # A cut-out: one colour everywhere, the object in the alpha channel.
        values, full, mode = np.asarray(im.getchannel("A")), 255.0, "L"
    elif mode in ("RGBA", "PA") and np.asarray(im.getchannel("A")).min() < 255:
        return None, Problem(
            path,
            COLOUR_WITHOUT_PALETTE,
            "an RGBA mask whose colours and transparency both vary, so which of them marks the "
            "object is unclear; save it as a grayscale, palette or RGB mask without transparency",
        )
    else:
        values, full = np.asarray(im.convert("RGB")), 255.0
        mode = "RGB"
    return MaskArray(values, mode, full, palette, lossy), None


def _alpha_marks(im: Image.Image) -> bool:
    """True for a mask whose colour channels are constant and whose alpha varies."""
    alpha = np.asarray(im.getchannel("A"))
    if alpha.size == 0 or alpha.min() == alpha.max():
        return False
    rgb = np.asarray(im.convert("RGB")).reshape(-1, 3)
    return bool((rgb == rgb[0]).all())


def threshold_values(mask: MaskArray) -> np.ndarray:
    """The one channel :func:`foreground_by_threshold` compares: colour masks use their first
    channel, as the reference loader does; palette masks the red of their colours."""
    v = mask.values
    if mask.mode == "P":
        v = mask.palette_rgb[v][..., 0] if mask.palette_rgb is not None else v
    elif v.ndim == 3:
        v = v[..., 0]
    return v


def foreground_by_threshold(mask: MaskArray, threshold: float = 0.4, on: float | None = None) -> np.ndarray:
    """Chair Segments' rule: a pixel is foreground when its value exceeds ``threshold`` of the
    "on" value, by default the full range of the file's bit depth (255 for 8-bit)."""
    return threshold_values(mask).astype(np.float32) > threshold * (mask.full_range if on is None else on)


_DIGESTS: dict[tuple, str] = {}


def file_digest(path: str) -> str:
    """``"<size>:<sha1>"`` of a file's bytes: the cache key of the label map made from it.

    Remembered within one process while the file's inode, size, mtime *and* ctime are the same
    (ctime cannot be set back by ``cp -p``/``unzip``), so a folder is read once per start.
    """
    st = os.stat(path)
    memo = (path, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if memo in _DIGESTS:
        return _DIGESTS[memo]
    h = hashlib.sha1()
    size = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
            size += len(block)
    _DIGESTS[memo] = f"{size}:{h.hexdigest()}"
    return _DIGESTS[memo]


def _pair_key(pair: Pair) -> list | None:
    # The mask by content; the image only by size and time (it is only checked for its size,
    # and hashing every photo at each start would cost more than decoding the masks).
    try:
        st = os.stat(pair.image)
        return [file_digest(pair.mask), st.st_size, st.st_mtime_ns]
    except OSError:
        return None


def _read_index(label_dir: str) -> dict:
    try:
        with open(os.path.join(label_dir, INDEX_FILE)) as f:
            index = json.load(f)
        return index if isinstance(index, dict) else {}
    except (OSError, json.JSONDecodeError):
        return {}


def _sync_params(label_dir: str, params: dict) -> None:
    """Drop label maps made with other conversion settings, then record the current ones."""
    path = os.path.join(label_dir, PARAMS_FILE)
    try:
        with open(path) as f:
            old = json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        old = None
    if old == params:
        return
    if old is not None:
        logger.info("Label map settings in %s changed (%s -> %s): rebuilding them", label_dir, old, params)
    with os.scandir(label_dir) as it:
        for de in it:
            if de.name.endswith(".png") or de.name == INDEX_FILE:
                os.remove(de.path)
    write_json_atomic(params, path)


def problem_order(problem: Problem):
    """Sort key putting problems in file-id order, so "the first bad file" is well defined."""
    return (_natural_key(os.path.splitext(os.path.basename(problem.path))[0]), problem.path)


def report_or_raise(
    problems: Sequence[Problem],
    *,
    what: str,
    skip_bad_files: bool,
    total: int,
    hint: str = "",
    skippable: bool = True,
) -> set[str]:
    """Raise naming the first bad file, or (when skipping) log every skipped file and the count.
    ``skippable=False``: a problem of the whole folder, which leaving files out does not mend.

    Returns the set of paths to skip.
    """
    if not problems:
        return set()
    if not skip_bad_files:
        first = problems[0]
        more = f" ({len(problems) - 1} more problem(s) in this dataset)" if len(problems) > 1 else ""
        skip = ", or leave bad files out with --skip-bad-files (Python: skip_bad_files=True)"
        raise DatasetError(
            f"{what}: {first}{more}. Fix the file(s) or pass the option named, or run "
            f"tools/validate_dataset.py for a report of every problem{skip if skippable else ''}.{hint}",
            problems,
        )
    skipped = {p.path for p in problems}
    for p in problems:
        logger.warning("%s: skipping %s", what, p)
    logger.warning("%s: skipped %d bad file(s) of %d (--skip-bad-files)", what, len(skipped), total)
    return skipped


Converter = Callable[[MaskArray, Pair], tuple["np.ndarray | None", "Problem | None"]]


@dataclass
class Checked:
    """What :func:`check_pair` found: the label map, the image's size as Detectron2 reads it,
    an 8-bit copy for a 16-bit image, or the problem."""

    label: np.ndarray | None = None
    size: tuple[int, int] | None = None
    problem: Problem | None = None
    image_8bit: Image.Image | None = None


def _orientation_note(path: str) -> str:
    try:
        with Image.open(path) as im:
            orientation = im.getexif().get(0x0112)
    except (OSError, ValueError, SyntaxError):
        return ""
    if orientation in (5, 6, 7, 8):
        return (
            f"; the image's EXIF orientation ({orientation}) turns it by 90 degrees, as viewers and "
            "Detectron2 show it: the mask must match the turned image"
        )
    return ""


def check_pair(pair: Pair, convert: Converter) -> Checked:
    """Decode image and mask fully (EXIF orientation applied to both, as Detectron2 and viewers
    apply it), compare sizes, convert the mask."""
    image, problem = read_image(pair.image)
    mask, mproblem = read_mask(pair.mask)
    problem = problem or mproblem
    size = (image.height, image.width) if image is not None else None
    if problem is None and mask.values.shape[:2] != size:
        problem = Problem(
            pair.mask,
            SIZE_MISMATCH,
            f"mask is {mask.values.shape[1]}x{mask.values.shape[0]}, image {pair.image} is "
            f"{size[1]}x{size[0]} (width x height){_orientation_note(pair.image)}",
        )
    if problem is not None:
        return Checked(problem=problem)
    label, problem = convert(mask, pair)
    return Checked(label, size, problem, image_8bit(image, pair.image)[0])


def check_all(
    pairs: Sequence[Pair],
    convert: Converter,
    pair_problems: Sequence[Problem] = (),
    on_checked: Callable[[Pair, Checked], None] | None = None,
) -> list[Problem]:
    """Every problem of every pair (nothing written), in file-id order; ``on_checked`` sees
    what each pair gave."""
    problems = list(pair_problems)
    for pair in pairs:
        checked = check_pair(pair, convert)
        if checked.problem is not None:
            problems.append(checked.problem)
        elif on_checked is not None:
            on_checked(pair, checked)
    return sorted(problems, key=problem_order)


def build_label_maps(
    pairs: Sequence[Pair],
    label_dir: str,
    convert: Converter,
    params: dict,
    *,
    what: str,
    pair_problems: Sequence[Problem] = (),
    skip_bad_files: bool = False,
    skipped: list[Problem] | None = None,
) -> list[Entry]:
    """Make sure every pair has a fresh label map; return the usable pairs with their sizes.

    Stale pairs are fully decoded (image and mask, so truncated files are caught), their sizes
    compared and the mask converted with ``convert``; fresh label maps were checked when they
    were written. Problems (including ``pair_problems`` from pairing) are raised or skipped
    as :func:`report_or_raise` says; ``skipped`` receives the problems of the files left out.
    """
    try:
        os.makedirs(label_dir, exist_ok=True)
    except OSError as e:
        raise OSError(f"{what}: cannot create the label map folder '{label_dir}': {e}") from e
    problems: list[Problem] = list(pair_problems)
    sizes: dict[str, tuple[int, int]] = {}
    params = {**params, "code_version": LABEL_CODE_VERSION}
    # One writer at a time: every process of a distributed launch loads the dataset.
    with file_lock(os.path.join(label_dir, "_label_maps")):
        _sync_params(label_dir, params)
        index = _read_index(label_dir)
        keys = {p.stem: _pair_key(p) for p in pairs}
        stale = [
            p
            for p in pairs
            if keys[p.stem] is None
            or index.get(p.stem, {}).get("key") != keys[p.stem]
            or not os.path.isfile(p.label)
        ]
        if stale:
            logger.info("%s: writing %d label map(s) to %s", what, len(stale), label_dir)
        for pair in stale:
            index.pop(pair.stem, None)
            checked = check_pair(pair, convert)
            if checked.problem is not None:
                problems.append(checked.problem)
                continue
            write_png_atomic(checked.label, pair.label)
            image = ""
            if checked.image_8bit is not None:
                image = os.path.join(label_dir, IMAGES_8BIT_DIR, pair.stem + ".png")
                os.makedirs(os.path.dirname(image), exist_ok=True)
                write_png_atomic(np.asarray(checked.image_8bit), image)
            sizes[pair.stem] = checked.size
            index[pair.stem] = {
                "key": keys[pair.stem],
                "size": list(checked.size),
                "values": [int(v) for v in np.unique(checked.label)],
                "image": image,
            }
        if stale:
            write_json_atomic(index, os.path.join(label_dir, INDEX_FILE))
    problems.sort(key=problem_order)
    left_out = report_or_raise(problems, what=what, skip_bad_files=skip_bad_files, total=len(pairs))
    if skipped is not None:
        skipped += problems
    entries = []
    for pair in pairs:
        if pair.image in left_out or pair.mask in left_out:
            continue
        if pair.stem not in sizes:
            sizes[pair.stem] = tuple(index[pair.stem]["size"])
        entries.append(Entry(pair, *sizes[pair.stem], image=index[pair.stem].get("image", "")))
    return entries


def label_values(label_dir: str, entries: Sequence[Entry]) -> dict[str, list[int]]:
    """The class ids in each entry's label map (recorded when it was written)."""
    index = _read_index(label_dir)
    return {e.pair.stem: index.get(e.pair.stem, {}).get("values", []) for e in entries}


def read_label_map(path: str) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)
