"""Helpers of tests/data (a unique module name: any set of test folders collects together)."""

import importlib.util
import os

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_tool(name: str):
    """Import ``tools/<name>.py`` as a module (tools/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(
        f"data_tools_{name}", os.path.join(REPO, "tools", f"{name}.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def save(array, path, **kw):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.asarray(array)).save(path, **kw)
