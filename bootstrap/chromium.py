"""Debian's ``chromium`` for the browser test (tests/deploy/test_serve_browser.py).

Playwright drives the system chromium through ``executable_path``: Playwright's own browser
download cannot reach its servers from the machines this project is tested on. Idempotent
(nothing to do when ``chromium`` is on PATH) and soft: when apt is missing or refuses, the set-up
goes on and the reason is written to ``<venv>/chromium-unavailable.txt``, which the browser test
shows as its skip reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REASON_FILE = "chromium-unavailable.txt"


def _log(msg: str) -> None:
    print(f"[chromium] {msg}", flush=True)


def _apt_install() -> str | None:
    """``apt-get install -y chromium`` (with one ``apt-get update`` retry); None when it worked."""
    if shutil.which("apt-get") is None:
        return "apt-get is not available (not a Debian/Ubuntu system): install chromium yourself"
    prefix: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            return "not root and no sudo: run `apt-get install -y chromium` as root"
        prefix = ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = prefix + ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    for attempt in ("install", "update then install"):
        if attempt != "install":
            subprocess.run(prefix + ["apt-get", "update"], env=env, capture_output=True, text=True)
        done = subprocess.run(install, env=env, capture_output=True, text=True)
        if done.returncode == 0 and shutil.which("chromium"):
            return None
    tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
    return f"`{' '.join(install)}` failed (exit {done.returncode}): {tail[0]}"


def ensure_chromium(venv: Path) -> bool:
    """Install chromium when missing; True when it is available afterwards."""
    reason_file = venv / REASON_FILE
    if shutil.which("chromium"):
        reason_file.unlink(missing_ok=True)
        return True
    _log("installing Debian's chromium for the browser test (apt-get install -y chromium)")
    reason = _apt_install()
    if reason is None:
        reason_file.unlink(missing_ok=True)
        _log(f"chromium installed: {shutil.which('chromium')}")
        return True
    _log(f"WARNING: {reason}. The browser test will be skipped with this reason.")
    reason_file.write_text(reason + "\n")
    return False
