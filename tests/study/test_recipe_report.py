"""projects/ChairSegments/recipe_report.py: curves and table of recipe runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from study_helpers import load_project_script


@pytest.fixture(scope="module")
def report():
    return load_project_script("recipe_report")


def _run_folder(tmp_path: Path, name: str = "run") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    rows = [{"iteration": i, "time": 0.5, "total_loss": 1.0} for i in (19, 39, 59, 79, 99, 119)]
    # Evaluations after iterations 40, 60 and 120; the first is written twice (a resume).
    rows[1].update({"chair_segments/IoU": 10.0, "chair_segments/Dice": 1.0})
    rows.insert(2, {"iteration": 39, "chair_segments/IoU": 50.0, "chair_segments/Dice": 60.0})
    rows[3].update({"chair_segments/IoU": 70.0, "bbox/AP": float("nan")})
    # The final evaluation: written after training at iteration MAX_ITER, without a step time.
    # TEST.AUG's evaluation beside it (the Trainer writes it before the writer closes).
    final = {"chair_segments/IoU": 75.0, "segm/AP": 12.5, "chair_segments_TTA/IoU": 76.0}
    rows.append({"iteration": 120, **final})
    (folder / "metrics.json").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (folder / "config.yaml").write_text(
        "MODEL:\n  META_ARCHITECTURE: UNet\n  SEMSEG_HEADS:\n    WIDTH_SCALE: 0.5\n"
        "INPUT:\n  MIN_SIZE_TEST: 64\nSOLVER:\n  MAX_ITER: 120\n"
    )
    return folder


def test_curve_counts_training_time_and_takes_the_later_row(report, tmp_path):
    run = report.describe_run(str(_run_folder(tmp_path)), "U-Net")
    ev = run["evaluations"]
    assert [e["iteration"] for e in ev] == [40, 60, 120]
    assert [e["training_minutes"] for e in ev] == pytest.approx([40 * 0.5 / 60, 0.5, 1.0], abs=0.01)
    assert ev[0]["IoU"] == 50.0 and ev[0]["Dice"] == 60.0
    assert "box_AP" not in ev[1]  # NaN is no result
    assert ev[2]["mask_AP"] == 12.5 and ev[2]["IoU_TTA"] == 76.0 and "IoU_TTA" not in ev[1]
    # The last third of 1.0 minute starts at 0.67: the last evaluation before it is at 0.5.
    assert run["iou_gain_last_third"] == pytest.approx(5.0)
    assert run["width_scale"] == 0.5 and run["input_size"] == 64 and run["max_iter"] == 120


def test_command_line_writes_table_json_and_figure(report, tmp_path, capsys):
    folder = _run_folder(tmp_path)
    out_json, out_png = tmp_path / "r.json", tmp_path / "r.png"
    assert report.main([f"{folder}=U-Net", "--json", str(out_json), "--figure", str(out_png)]) == 0
    table = capsys.readouterr().out
    assert "| U-Net | 0.5 | 64 | 120 (120) | 1.0 | 75.00 | 76.00 | 75.00 | 5.00 | - | 12.5 |" in table
    assert json.loads(out_json.read_text())[0]["label"] == "U-Net"
    assert out_png.stat().st_size > 0


def test_existing_outputs_are_refused_without_overwrite(report, tmp_path, capsys):
    folder = _run_folder(tmp_path)
    out_json, out_png = tmp_path / "r.json", tmp_path / "r.png"
    out_json.write_text("earlier")
    assert report.main([f"{folder}=U-Net", "--json", str(out_json)]) == 2
    assert "--json" in capsys.readouterr().err and out_json.read_text() == "earlier"
    out_png.write_bytes(b"earlier")
    assert report.main([f"{folder}=U-Net", "--figure", str(out_png)]) == 2
    assert "pass --overwrite" in capsys.readouterr().err and out_png.read_bytes() == b"earlier"
    assert report.main([f"{folder}=U-Net", "--json", str(out_json), "--overwrite"]) == 0
    assert json.loads(out_json.read_text())[0]["label"] == "U-Net"


def test_folder_without_metrics_is_refused(report, tmp_path, capsys):
    assert report.main([str(tmp_path)]) == 2
    assert "has no metrics.json" in capsys.readouterr().err


def test_evaluation_inside_a_log_window_gets_its_share(report):
    rows = [{"iteration": 19, "time": 1.0}, {"iteration": 24, "chair_segments/IoU": 40.0},
            {"iteration": 39, "time": 2.0}, {"iteration": 40, "chair_segments/IoU": 45.0}]  # fmt: skip
    a, b = report.training_curve(rows)
    assert a["iteration"] == 25 and b["iteration"] == 40
    assert a["training_minutes"] == pytest.approx((20 * 1.0 + 5 * 2.0) / 60, abs=0.01)
    assert b["training_minutes"] == pytest.approx((20 + 40) / 60, abs=0.01)


def test_study_groups_seeds_and_ranks_beside_the_paper(report, tmp_path, capsys):
    a, b = _run_folder(tmp_path, "a"), _run_folder(tmp_path, "b")
    other = report.describe_run(str(_run_folder(tmp_path, "c")), "FCN-8s")
    other["evaluations"][-1]["IoU"] = 90.0  # above U-Net: the ranks differ from the paper's
    saved = tmp_path / "c.json"
    saved.write_text(json.dumps(other))
    rows = report.study_rows(
        [report.describe_run(str(a), "U-Net"), {**report.describe_run(str(b), "U-Net"),
         "evaluations": [{"iteration": 120, "training_minutes": 1.0, "IoU": 85.0}]},
         report.load_run_json(str(saved))], budget_minutes=0.9)  # fmt: skip
    unet, fcn = rows
    assert unet["runs"] == 2 and unet["IoU"] == pytest.approx(80.0)
    assert unet["IoU_sd"] == pytest.approx(7.071, abs=1e-3)  # sample sd of 75 and 85
    assert unet["IoU_within_budget"] == pytest.approx(70.0)  # only run a has one by 0.9 min
    assert (unet["rank"], unet["paper_rank"], fcn["rank"], fcn["paper_rank"]) == (2, 1, 1, 2)
    assert report.main(["--study", f"{a}=U-Net", f"{b}=U-Net", f"{saved}=FCN-8s"]) == 0
    table = capsys.readouterr().out
    assert "| U-Net | 2 | 0.5 | 64 | 120 | 1.0 | 75.00 ± 0.00 | 76.00 ± 0.00 | 75.00 ± 0.00 |" in table
    # A run without a TTA evaluation: the mean is of the runs that have one, and says so.
    assert unet["IoU_TTA"] == 76.0 and unet["IoU_TTA_runs"] == 1
    assert "| 80.00 ± 7.07 | 76.00 (1 of 2 runs) |" in report.study_table(rows, 0.9)
    assert "| 61.09 | 1 (2) |" in table


def test_study_budget_in_iterations(report, tmp_path, capsys):
    """--budget-iterations: the budget is the same on any machine (minutes are not)."""
    a = report.describe_run(str(_run_folder(tmp_path, "a")), "U-Net")
    b = {**a, "evaluations": [{"iteration": 120, "training_minutes": 0.1, "IoU": 85.0}]}
    (unet,) = report.study_rows([a, b], budget_minutes=30.0, budget_iterations=60)
    # Run a's evaluation at iteration 60 counts; run b's only one, at 120, does not, however few
    # its minutes.
    assert unet["IoU_within_budget"] == pytest.approx(70.0) and unet["IoU_within_budget_runs"] == 1
    assert unet["budget"] == "60 it"
    folder = _run_folder(tmp_path, "c")
    assert report.main(["--study", f"{folder}=U-Net", "--budget-iterations", "60"]) == 0
    out = capsys.readouterr().out
    assert "IoU within 60 it |" in out and "| 75.00 | 76.00 | 70.00 |" in out
    with pytest.raises(SystemExit):
        report.main(["--study", f"{folder}=U-Net", "--budget-iterations", "0"])
    assert "--budget-iterations must be a positive" in capsys.readouterr().err


def test_a_json_that_is_not_a_run_is_refused(report, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    assert report.main([str(bad)]) == 2
    assert "is not one run of recipe_report" in capsys.readouterr().err


def test_eleven_labels_get_eleven_colours(report):
    """The study draws 11 models: past tab10's 10 colours, U-Net and the 11th must still differ."""
    labels = [f"model {i}" for i in range(11)] + ["model 0"]  # a second seed shares its colour
    colors = report.label_colors(labels)
    assert len(colors) == 11 and len(set(colors.values())) == 11


def test_from_report_replaces_the_runs_of_the_labels_given(report, tmp_path, capsys):
    a, b, c = (report.describe_run(str(_run_folder(tmp_path, n)), label) for n, label in
               (("a", "U-Net"), ("b", "FCN-8s"), ("c", "U-Net")))  # fmt: skip
    earlier = tmp_path / "study.json"
    earlier.write_text(json.dumps({"models": [], "runs": [a, b, c]}))
    new = _run_folder(tmp_path, "d")
    out = tmp_path / "o.json"
    assert report.main(["--study", "--from-report", str(earlier), f"{new}=U-Net", "--json", str(out)]) == 0
    runs = json.loads(out.read_text())["runs"]
    # U-Net's two earlier runs give way to the new one, in U-Net's place; FCN-8s is kept.
    assert [(r["label"], r["folder"]) for r in runs] == [("U-Net", str(new)), ("FCN-8s", b["folder"])]
    assert "| U-Net | 1 |" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"runs": [{"label": "x"}]}))
    assert report.main(["--from-report", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "run 0" in err and "is not one run of recipe_report" in err
