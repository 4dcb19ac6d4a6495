"""Helpers of tests/study (a unique module name: any set of test folders collects together)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
from PIL import Image

PROJECT = Path(__file__).resolve().parents[2] / "projects" / "ChairSegments"


def load_project_script(name: str) -> ModuleType:
    """Import ``projects/ChairSegments/<name>.py`` (a script, not a package module)."""
    spec = importlib.util.spec_from_file_location(f"study_{name}", PROJECT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    # Registered first, as an import would: dataclasses look their module up by name.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def chair_label_records(folder: Path, count: int = 3, seed: int = 0) -> list[dict]:
    """``count`` 64x64 label maps of a chair-like shape (a 3-px leg and a seat), saved as PNGs,
    as records with ``sem_seg_file_name``."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(count):
        label = np.zeros((64, 64), np.uint8)
        y, x = rng.integers(4, 30, 2)
        label[y : y + 24, x : x + 3] = 1  # a leg
        label[y : y + 6, x : x + 20] = 1  # a seat
        path = folder / f"{seed}_{i}.png"
        Image.fromarray(label).save(path)
        records.append({"sem_seg_file_name": str(path)})
    return records
