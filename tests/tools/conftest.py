"""Fixtures of tests/tools: the train_net tool and a tiny semantic dataset."""

import pytest

# pytest's default (prepend) import mode puts this folder on the path for its conftest.
from tiny_data import register_tiny_semseg
from tools_helpers import load_tool


@pytest.fixture(scope="session")
def train_net():
    return load_tool("train_net")


@pytest.fixture(scope="session")
def tiny_semseg(tmp_path_factory):
    """(train, val) names of a hand-made 8 + 4 image semantic dataset at 64x64."""
    root = tmp_path_factory.mktemp("tiny_semseg")
    return (
        register_tiny_semseg("tools_test_tiny_train", str(root / "train"), 8, seed=0),
        register_tiny_semseg("tools_test_tiny_val", str(root / "val"), 4, seed=1),
    )
