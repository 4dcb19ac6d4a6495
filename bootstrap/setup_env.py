#!/usr/bin/env python3
"""Create or update the project-local environment: ``make setup`` runs this as
``python -m bootstrap.setup_env`` from the repository root.

Idempotent: each step checks what is there and skips work already done.

1. a virtual environment (``.venv`` by default; never the system Python);
2. the pinned PyTorch (``requirements/torch.txt``);
3. Detectron2: an already-installed one is kept as is (e.g. the official build from source,
   with its C++ ops); otherwise, with ``--detectron2-source``, the official Detectron2 built
   from that folder / archive / git URL; otherwise v0.6 from the verified ``pb1-detectron2``
   archive (``bootstrap/install_detectron2.py``) with the v0.6 constraints;
4. ``semseg_heads`` in editable mode with its ``dev`` and ``deploy`` extras and the Chair
   Segments project ``chairseg`` (``projects/ChairSegments``) with its ``serve`` extra, in one
   pip call (constrained like Detectron2 on the v0.6 path, so no later install lifts numpy or
   Pillow past what v0.6 runs with), and Debian's chromium for the browser test
   (``bootstrap/chromium.py``; soft);
5. one line saying which detectron2 is in use and whether its compiled ops are present.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import venv
from pathlib import Path

from bootstrap import install_detectron2 as d2
from bootstrap.chromium import ensure_chromium

REPO = d2.REPO


def fingerprint(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def step_done(stamp: Path, key: str) -> bool:
    return stamp.exists() and stamp.read_text() == key


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Set up the semseg_heads environment.")
    parser.add_argument("--venv", type=Path, default=REPO / ".venv")
    parser.add_argument(
        "--detectron2-source",
        help="build the official Detectron2 (compiled ops) from this source folder, .tar.gz or git "
        "URL instead of installing v0.6 (kept if the environment already has a compiled build)",
    )
    args = parser.parse_args(argv)
    env = args.venv.resolve()
    python = str(env / "bin" / "python")

    if not (env / "bin" / "python").exists():
        d2.log(f"creating the virtual environment {env}")
        venv.EnvBuilder(with_pip=True).create(env)

    try:
        torch_reqs = REPO / "requirements" / "torch.txt"
        stamp = env / ".semseg_heads-torch"
        if not step_done(stamp, fingerprint(torch_reqs)):
            d2.pip(python, "-r", str(torch_reqs))
            stamp.write_text(fingerprint(torch_reqs))

        route = d2.ensure_detectron2(python, REPO / ".cache", source=args.detectron2_source)

        project = REPO / "projects" / "ChairSegments"
        package_inputs = [REPO / "setup.py", project / "setup.py", d2.CONSTRAINTS]
        stamp = env / ".semseg_heads-package"
        # Only the archive route constrains the install; a source build kept on a later run is
        # the same environment, so it must not reinstall.
        key = ("archive" if route == "archive" else "official") + fingerprint(*package_inputs)
        if not step_done(stamp, key):
            constraints = ["-c", str(d2.CONSTRAINTS)] if route == "archive" else []
            d2.pip(python, *constraints, "-e", f"{REPO}[dev,deploy]", "-e", f"{project}[serve]")
            stamp.write_text(key)
    except (d2.SetupError, subprocess.CalledProcessError) as e:
        print(f"ERROR: set-up failed: {e}", file=sys.stderr)
        return 2

    ensure_chromium(env)  # never fails the set-up: the browser test skips, saying why

    # The one-line report, from inside the environment.
    return subprocess.run([python, "-m", "semseg_heads.compat"]).returncode


if __name__ == "__main__":
    sys.exit(main())
