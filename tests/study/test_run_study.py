"""run_study.py end to end with a tiny budget on two configs (one of them with two seeds), then
its resume."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[2]
RUN_STUDY = REPO / "projects" / "ChairSegments" / "run_study.py"
CONFIGS = ["study/unet", "study/dilated_frontend"]  # run names: the configs' stems
RUNS = ["unet", "unet_seed1", "dilated_frontend"]  # unet is trained once per --seeds


def _run(out: Path) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        str(RUN_STUDY),
        "--configs",
        *CONFIGS,
        "--output-dir",
        str(out),
        "--iters",
        "2",
        "--batch",
        "2",
        "--width-scale",
        "0.0625",
        "--num-workers",
        "0",
        "--train-images",
        "8",
        "--val-images",
        "4",
        "--grid-images",
        "3",
        "--seeds",
        "0",
        "1",
        "--seeded-models",
        "unet",
        "--eval-points",
        "2",
        "--device",
        "cpu",
        "MODEL.WEIGHTS",
        "",  # dilated_frontend names an ImageNet start (torchvision://vgg16): offline here
    ]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_run_study_tiny_budget_then_resume(tmp_path: Path) -> None:
    out = tmp_path / "study"
    proc = _run(out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    summary = json.loads((out / "results.json").read_text())
    assert [m["model"] for m in summary["models"]] == RUNS
    assert [m["seed"] for m in summary["models"]] == [0, 1, 0]
    for m in summary["models"]:
        assert not m.get("failed"), m
        assert m["iters"] == 2 and m["batch"] == 2
        # One evaluation on the way (half of the budget), one after training.
        assert [p["iter"] for p in m["val_curve"]] == [1, 2]
        assert 0 < m["val_curve"][0]["train_seconds"] <= m["val_curve"][1]["train_seconds"]
        assert m["val_curve"][-1]["metrics"] == m["metrics"]
        assert m["params"] > 0 and m["gmacs_per_image"] > 0
        assert m["train_images_per_s"] > 0 and m["infer_images_per_s"] > 0
        assert m["peak_rss_mb"] > 100
        for key in ("Prec", "IoU", "Dice", "mIoU"):
            v = m["metrics"][key]
            assert v is not None and (math.isnan(v) or 0.0 <= v <= 100.0), (key, v)
        assert 0.0 <= m["metrics"]["Prec"] <= 100.0
        assert (out / m["model"] / "model_final.pth").is_file()
        assert (out / m["model"] / "config.yaml").is_file()  # the run folder carries its config

    table = (out / "results.md").read_text()
    for name in RUNS:
        assert f"| {name} |" in table
    assert "| *all background* |" in table
    assert "| unet | 0, 1 |" in table  # the spread over seeds
    assert Image.open(out / "val_iou_curve.png").size[0] > 500

    grid = Image.open(out / "qualitative.png")
    # input + ground truth + one column per model; a header strip + one row per val image.
    cell, pad, header = 128, 4, 18
    assert grid.size == ((2 + len(RUNS)) * (cell + pad) + pad, header + 3 * (cell + pad) + pad)

    # Second run: nothing is retrained, the same results come back.
    stamps = {n: (out / n / "model_final.pth").stat().st_mtime_ns for n in RUNS}
    again = _run(out)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert again.stderr.count("not retrained") == len(RUNS), again.stderr[-3000:]
    assert stamps == {n: (out / n / "model_final.pth").stat().st_mtime_ns for n in RUNS}
    assert json.loads((out / "results.json").read_text())["models"] == summary["models"]


def test_run_study_refuses_changed_settings(tmp_path: Path) -> None:
    out = tmp_path / "study"
    out.mkdir()
    (out / "study_settings.json").write_text(json.dumps({"budget": {"iters": 999}}))
    proc = subprocess.run(
        [sys.executable, str(RUN_STUDY), "--configs", "study/unet", "--output-dir", str(out), "--iters", "2"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "other settings" in proc.stderr and "budget" in proc.stderr


def test_run_study_wall_clock_budget_ends_training(tmp_path: Path) -> None:
    """--minutes: iterations are calibrated, and the clock ends training early (here after the
    first iteration) with model_final.pth saved and the evaluation done."""
    out = tmp_path / "study"
    cmd = [
        sys.executable,
        str(RUN_STUDY),
        "--configs",
        "unet",
        "--output-dir",
        str(out),
        "--minutes",
        "0.0001",
        "--batch",
        "2",
        "--width-scale",
        "0.0625",
        "--num-workers",
        "0",
        "--train-images",
        "8",
        "--val-images",
        "2",
        "--grid-images",
        "2",
        "--seeds",
        "0",
        "--device",
        "cpu",
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (m,) = json.loads((out / "results.json").read_text())["models"]
    assert m["planned_iters"] >= 2 and m["iters"] == 1, (m["iters"], m["planned_iters"])
    assert [p["iter"] for p in m["val_curve"]] == [1]  # the clock ended it before any point
    assert (out / "unet" / "model_final.pth").is_file()
    assert 0.0 <= m["metrics"]["Prec"] <= 100.0
    log = (out / "unet" / "study_worker.log").read_text()
    assert "calibration:" in log and "wall-clock budget" in log


def test_run_study_killed_run_resumes_curve_and_clock(tmp_path: Path) -> None:
    """A run killed after its evaluation point resumes from the checkpoint saved there: the
    curve keeps that point, drops nothing else, and its clock goes on from that point."""
    out = tmp_path / "study"
    cmd = [sys.executable, str(RUN_STUDY), "--configs", "study/unet", "--output-dir", str(out)]
    cmd += ["--iters", "4"]
    cmd += ["--batch", "2", "--width-scale", "0.0625", "--num-workers", "0", "--train-images", "8"]
    cmd += ["--val-images", "2", "--grid-images", "2", "--seeds", "0", "--eval-points", "2"]
    proc = subprocess.run(cmd + ["--device", "cpu"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = out / "unet"
    first = json.loads((run / "study_result.json").read_text())["val_curve"]
    assert [p["iter"] for p in first] == [2, 4]
    assert (run / "model_0000001.pth").is_file()  # saved at the evaluation point

    # As if killed after the point: no result, no final model, the last checkpoint the point's.
    (run / "study_result.json").unlink()
    (run / "model_final.pth").unlink()
    (run / "last_checkpoint").write_text("model_0000001.pth")
    again = subprocess.run(cmd + ["--device", "cpu"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    m = json.loads((run / "study_result.json").read_text())
    assert m["resumed_from_iter"] == 2 and m["iters"] == 4
    assert [p["iter"] for p in m["val_curve"]] == [2, 4]
    assert m["val_curve"][0] == first[0]  # the point before the kill is kept as it was
    assert m["val_curve"][1]["train_seconds"] >= first[0]["train_seconds"]
