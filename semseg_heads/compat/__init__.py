"""What semseg_heads needs to know about the detectron2 it runs on."""

from __future__ import annotations

import importlib.util
from functools import cache


@cache
def compiled_ops_available() -> bool:
    """True when ``detectron2._C`` is Detectron2's compiled module, not our stand-in."""
    try:
        from detectron2 import _C
    except ImportError:
        return False
    return not getattr(_C, "SEMSEG_HEADS_STANDIN", False)


def detectron2_info() -> dict[str, str | bool]:
    """Which detectron2 is imported, its version, and whether its compiled ops are present."""
    import detectron2

    spec = importlib.util.find_spec("detectron2._C")
    compiled = compiled_ops_available()
    if compiled:
        source = "installed build with compiled ops"
    elif spec is not None:
        source = "v0.6 Python package from PyPI's pb1-detectron2==0.6 archive (sha256-verified)"
    else:
        source = "installed package without a detectron2._C module"
    return {
        "version": detectron2.__version__,
        "location": str(detectron2.__path__[0]),
        "source": source,
        "compiled_ops": compiled,
        "ops_module": spec.origin if spec is not None and spec.origin else "absent",
    }


def report_line() -> str:
    info = detectron2_info()
    ops = "present" if info["compiled_ops"] else "absent (stand-in raises a clear error per op)"
    return f"detectron2 {info['version']} | {info['source']} | {info['location']} | compiled ops: {ops}"
