"""Helpers of tests/tools (a unique module name: any set of test folders collects together)."""

import importlib.util
import logging
import os

from detectron2.utils.logger import setup_logger

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_tool(name: str):
    """Import ``tools/<name>.py`` as a module (tools/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"tools_{name}", os.path.join(REPO, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fresh_logs():
    """Detectron2's setup_logger adds handlers per output folder and caches them: in one
    process running many jobs, drop them so each job's log.txt holds that job only."""
    for name in ("detectron2", "fvcore", "semseg_heads"):
        lg = logging.getLogger(name)
        for h in list(lg.handlers):
            lg.removeHandler(h)
            h.close()
    setup_logger.cache_clear()
