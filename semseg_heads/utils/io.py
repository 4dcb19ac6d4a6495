"""File helpers used across the library: atomic writes, JSON, image extensions, dataset folder
names. Each exists once here; nothing else in semseg_heads writes files half-way."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

#: File extensions read as images (by PIL) wherever a folder of images is listed.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm")


def resolution_folder(resolution: int) -> str:
    """Chair Segments' folder name of one resolution: 64 -> ``Chair064``."""
    return f"Chair{int(resolution):03d}"


def refuse_existing(
    path: str | os.PathLike, overwrite: bool, how: str = "pass --overwrite to replace it"
) -> None:
    """Raise ``FileExistsError`` naming ``path`` when it exists and ``overwrite`` is False, so
    that no output is replaced silently; ``how`` tells the caller's way to allow it."""
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"'{os.fspath(path)}' exists; {how}")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one step.

    Readers (other processes, a resumed run) never see a half-written file. The temporary
    name is hidden, unique per process and does not end in the target's extension, so a
    folder listing of images never picks up one left by a crash.
    """
    path = os.fspath(path)
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json_atomic(obj: Any, path: str | os.PathLike, **dump_kwargs: Any) -> None:
    """``json.dump(obj)`` to ``path`` atomically (``dump_kwargs``: ``indent``, ``default``...)."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(obj, f, **dump_kwargs)


def read_json_or_none(path: str | os.PathLike) -> Any | None:
    """The JSON in ``path``, or None when it is missing or not valid JSON (e.g. a stale cache)."""
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_png_atomic(array: np.ndarray, path: str | os.PathLike, compress_level: int = 1) -> None:
    """An 8-bit PNG (grayscale for ``HxW``, RGB for ``HxWx3``) written atomically."""
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8))
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG", compress_level=compress_level)
