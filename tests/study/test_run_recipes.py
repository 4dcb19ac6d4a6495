"""projects/ChairSegments/run_recipes.py: seeds of recipes through train_net, stage by stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from study_helpers import load_project_script

# Stands in for tools/train_net.py: records its arguments, then writes what a finished run
# leaves (config.yaml, a final evaluation in metrics.json); FAIL in the options fails it.
FAKE_TRAIN_NET = """
import json, sys
from pathlib import Path
args = sys.argv[1:]
out = Path(args[args.index("OUTPUT_DIR") + 1])
with open(out.parent / "calls.txt", "a") as f:
    f.write(json.dumps(args) + "\\n")
if "FAIL" in args:
    sys.exit(3)
(out / "config.yaml").write_text("SOLVER:\\n  MAX_ITER: 10\\n")
(out / "metrics.json").write_text(json.dumps({"iteration": 10, "chair_segments/IoU": 50.0}) + "\\n")
"""


@pytest.fixture(scope="module")
def study():
    return load_project_script("run_recipes")


def _calls(out: Path) -> list[list[str]]:
    return [json.loads(line) for line in (out / "calls.txt").read_text().splitlines()]


def test_runs_seeds_in_order_fills_sets_and_resumes(study, tmp_path):
    fake = tmp_path / "train_net.py"
    fake.write_text(FAKE_TRAIN_NET)
    out = tmp_path / "runs"
    weights = "{output_dir}/semantic_fpn_R_18_s{seed}/model_final.pth"
    argv = ["--recipes", "semantic_fpn_R_18", "mask_rcnn_R_18_FPN_semstart", "--seeds", "1", "2",
            "--output-dir", str(out), "--jobs", "2", "--train-net", str(fake),
            "--set", f"mask_rcnn_R_18_FPN_semstart:MODEL.WEIGHTS={weights}",
            "--set", "mask_rcnn_R_18_FPN_semstart:SOLVER.IMS_PER_BATCH=4"]  # fmt: skip
    assert study.main(argv) == 0
    calls = {Path(c[c.index("OUTPUT_DIR") + 1]).name: c for c in _calls(out)}
    # Two at a time within a recipe; the second recipe only after the first one's seeds.
    assert list(calls)[:2] in (["semantic_fpn_R_18_s1", "semantic_fpn_R_18_s2"],
                               ["semantic_fpn_R_18_s2", "semantic_fpn_R_18_s1"])  # fmt: skip
    mr = calls["mask_rcnn_R_18_FPN_semstart_s2"]
    assert mr[0] == "--resume" and mr[mr.index("SEED") + 1] == "2"
    assert mr[mr.index("MODEL.DEVICE") + 1] == "cpu"
    assert mr[mr.index("MODEL.WEIGHTS") + 1] == f"{out}/semantic_fpn_R_18_s2/model_final.pth"
    assert mr[mr.index("SOLVER.IMS_PER_BATCH") + 1] == "4"  # a repeated --set adds, not replaces
    assert study.main(argv) == 0  # everything finished: nothing runs again
    assert len(_calls(out)) == 4


def test_a_failed_run_stops_the_study(study, tmp_path, capsys):
    fake = tmp_path / "train_net.py"
    fake.write_text(FAKE_TRAIN_NET)
    out = tmp_path / "runs"
    argv = ["--recipes", "unet", "fcn8s", "--seeds", "0", "--output-dir", str(out),
            "--train-net", str(fake), "--set", "unet:MODEL.WEIGHTS=FAIL"]  # fmt: skip
    assert study.main(argv) == 1
    assert "unet_s0" in capsys.readouterr().err
    assert len(_calls(out)) == 1  # fcn8s did not start


@pytest.mark.parametrize(
    "argv, message",
    [(["--recipes", "nope"], "no recipe 'nope'"),
     (["--recipes", "unet", "--set", "unet:MODEL.WEIGHTS"], "expected RECIPE:KEY=VALUE"),
     (["--recipes", "unet", "--set", "fcn8s:SEED=1"], "not in --recipes")],
)  # fmt: skip
def test_bad_arguments_are_refused(study, argv, message, capsys):
    assert study.main(argv) == 2
    assert message in capsys.readouterr().err
