"""Fixtures of tests/data: a generated Chair064 and its registration."""

import os

import numpy as np
import pytest

# pytest's default (prepend) import mode puts this folder on the path for its conftest.
from data_helpers import save


@pytest.fixture(scope="session")
def chair064_root(tmp_path_factory):
    """A generated Chair064: train 6, val 10, plus val image 11 whose mask is empty."""
    from chairseg.data.synthetic import generate_chair_segments

    root = str(tmp_path_factory.mktemp("chair_segments"))
    generate_chair_segments(root, 64, {"train": 6, "val": 10}, seed=0, workers=1, progress=False)
    val = os.path.join(root, "Chair064", "val")
    rng = np.random.default_rng(0)
    save(np.zeros((64, 64), np.uint8), os.path.join(val, "mask", "11.png"))
    save(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), os.path.join(val, "image", "11.png"))
    return root


@pytest.fixture
def chair064(chair064_root):
    """``chair064_root`` registered under the standard names; the builtin names (./datasets)
    are restored afterwards so other tests see what they expect."""
    from semseg_heads.data import register_chair_segments
    from semseg_heads.data.chair_segments import register_builtin_chair_segments

    names = register_chair_segments(chair064_root)
    yield chair064_root, names
    register_builtin_chair_segments()
