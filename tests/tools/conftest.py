import importlib.util
import logging
import os

import pytest
from detectron2.utils.logger import setup_logger

# pytest's default (prepend) import mode puts this folder on the path for its conftest.
from tiny_data import register_tiny_semseg

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_tool(name: str):
    """Import ``tools/<name>.py`` as a module (tools/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"tools_{name}", os.path.join(REPO, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def fresh_logs():
    """Detectron2's setup_logger adds handlers per output folder and caches them: in one
    process running many jobs, drop them so each job's log.txt holds that job only."""
    for name in ("detectron2", "fvcore", "semseg_heads"):
        lg = logging.getLogger(name)
        for h in list(lg.handlers):
            lg.removeHandler(h)
            h.close()
    setup_logger.cache_clear()
