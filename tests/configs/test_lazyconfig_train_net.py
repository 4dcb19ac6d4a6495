"""Detectron2's ``tools/lazyconfig_train_net.py`` trains and evaluates a LazyConfig of ours.

The script is Detectron2's, not ours: it comes from the Detectron2 source the Detectron2-main
leg is built from (``$D2_SOURCE``, the bootstrap's unpacked copy under ``.cache/build/``, or
the archive ``../shared/detectron2/detectron2-*.tar.gz`` the Makefile's D2_SOURCE defaults to).
It runs on tiny generated Chair Segments folders for 3 iterations at a small width.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SCRIPT = "tools/lazyconfig_train_net.py"


def _from_archive(archive: Path, dest: Path) -> Path | None:
    with tarfile.open(archive, "r:*") as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.endswith("/" + SCRIPT) and member.name.count("/") == 2:
                target = dest / "lazyconfig_train_net.py"
                with tar.extractfile(member) as src:  # type: ignore[union-attr]
                    target.write_bytes(src.read())
                return target
    return None


def find_lazyconfig_train_net(dest: Path) -> Path | None:
    """Detectron2's script from the first Detectron2 source found (see the module docstring)."""
    candidates = [os.environ.get("D2_SOURCE", "")]
    candidates += sorted(glob.glob(str(REPO / ".cache" / "build" / "detectron2-*" / "detectron2-*")))
    candidates += sorted(glob.glob(str(REPO.parent / "shared" / "detectron2" / "detectron2-*.tar.gz")))
    for source in filter(None, candidates):
        path = Path(source)
        if path.is_dir() and (path / SCRIPT).is_file():
            return path / SCRIPT
        if path.is_file() and path.name.endswith((".tar.gz", ".tgz", ".tar")):
            found = _from_archive(path, dest)
            if found is not None:
                return found
    return None


def write_tiny_chair_segments(root: Path, splits: dict[str, int], size: int = 64) -> None:
    """``root/ChairSegments/Chair064/<split>/{image,mask}/<id>.png``: a bright rectangle per image."""
    rng = np.random.default_rng(0)
    for split, n in splits.items():
        base = root / "ChairSegments" / "Chair064" / split
        (base / "image").mkdir(parents=True)
        (base / "mask").mkdir(parents=True)
        for i in range(n):
            mask = np.zeros((size, size), dtype=np.uint8)
            y0, x0 = rng.integers(4, size // 2, 2)
            h, w = rng.integers(size // 4, size // 2, 2)
            mask[y0 : y0 + h, x0 : x0 + w] = 255
            image = rng.integers(0, 100, (size, size, 3), dtype=np.uint8)
            image[mask > 0] = (200, 180, 60)
            Image.fromarray(image).save(base / "image" / f"{i}.png")
            Image.fromarray(mask).save(base / "mask" / f"{i}.png")


def test_lazyconfig_train_net_trains_and_evaluates_unet(tmp_path: Path) -> None:
    script = find_lazyconfig_train_net(tmp_path)
    if script is None:
        pytest.skip(
            "no Detectron2 source with tools/lazyconfig_train_net.py: set D2_SOURCE to a source folder "
            "or .tar.gz, or put detectron2-*.tar.gz in ../shared/detectron2/ (the Detectron2-main leg, "
            "make test-d2main, has the unpacked source in .cache/build/)"
        )
    write_tiny_chair_segments(tmp_path / "datasets", {"train": 6, "val": 3})
    out = tmp_path / "out"
    env = dict(os.environ)
    env["DETECTRON2_DATASETS"] = str(tmp_path / "datasets")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    cmd = [
        sys.executable,
        str(script),
        "--config-file",
        str(REPO / "configs" / "ChairSegments" / "unet.py"),
        "train.device=cpu",
        "train.max_iter=3",
        "train.eval_period=3",
        "train.log_period=1",
        "train.checkpointer.period=1000",
        f"train.output_dir={out}",
        "model.backbone.base_width=4",
        "dataloader.train.total_batch_size=2",
        "dataloader.train.num_workers=0",
        "dataloader.test.num_workers=0",
    ]
    # Not from the repository root: Detectron2's source tree there would not be imported anyway,
    # but the run's relative paths (./output) must land in tmp.
    run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-4000:]
    metrics = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines() if line.strip()]
    evaluated = [m for m in metrics if any(k.startswith("sem_seg/") for k in m)]
    assert evaluated, f"no sem_seg/ metrics in {out / 'metrics.json'}: {metrics}"
    assert 0.0 <= evaluated[-1]["sem_seg/mIoU"] <= 100.0
    assert (out / "model_final.pth").is_file()

    # --eval-only on the checkpoint just written, as docs/configs.md shows it.
    weights = f"train.init_checkpoint={out / 'model_final.pth'}"
    evaluate = subprocess.run(
        [*cmd[:4], "--eval-only", weights, *cmd[4:]],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = evaluate.stdout + evaluate.stderr
    assert evaluate.returncode == 0, log[-4000:]
    assert "mIoU" in evaluate.stdout, log[-4000:]
