"""Your own folder from the command line: the README's example, run as written (subprocesses),
plus the command-line errors: class count mismatch, unregistered dataset, demo misuse."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from tools_helpers import REPO, load_tool

from semseg_heads.config import get_semseg_heads_cfg
from semseg_heads.data import register_folder_dataset
from semseg_heads.data.cli import fit_num_classes

UNET = os.path.join(REPO, "configs", "ChairSegments", "unet.yaml")
# The README's commands at CPU-test size: a narrow U-Net, a few iterations.
SMALL_TRAIN = [
    "MODEL.SEMSEG_HEADS.WIDTH_SCALE", "0.125", "SOLVER.MAX_ITER", "6", "SOLVER.IMS_PER_BATCH", "2",
    "SOLVER.WARMUP_ITERS", "0", "SOLVER.LOG_PERIOD", "1", "TEST.EVAL_PERIOD", "0",
    "DATALOADER.NUM_WORKERS", "0",
]  # fmt: skip
SMALL_DEMO = ["MODEL.SEMSEG_HEADS.WIDTH_SCALE", "0.125"]


def write_folder(root, n, seed, mask_values=(0, 255)):
    """``n`` JPEG images with a bright box ("chair") and PNG masks of it."""
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    os.makedirs(os.path.join(root, "masks"), exist_ok=True)
    for i in range(n):
        img = rng.integers(0, 90, (64, 64, 3), dtype=np.uint8)
        mask = np.full((64, 64), mask_values[0], np.uint8)
        y, x = rng.integers(4, 30, 2)
        mask[y : y + 24, x : x + 20] = mask_values[1]
        if len(mask_values) > 2:
            mask[:6, :6] = mask_values[2]
        img[mask != mask_values[0]] = (210, 170, 40)
        Image.fromarray(img).save(os.path.join(root, "images", f"photo_{i}.jpg"), quality=95)
        Image.fromarray(mask).save(os.path.join(root, "masks", f"photo_{i}.png"))


# Where the own-data section lives.
README_FILES = ("README.md",)


def readme_block() -> str:
    """The shell block between the own-dataset-example markers of the first file holding them."""
    for name in README_FILES:
        path = os.path.join(REPO, name)
        if os.path.isfile(path):
            found = re.search(r"<!-- own-dataset-example -->\s*```bash\n(.*?)```", open(path).read(), re.S)
            if found:
                return found.group(1)
    raise AssertionError(f"no own-dataset-example block in {README_FILES}")


def readme_example() -> list[list[str]]:
    """The commands of the README's own-dataset example."""
    block = readme_block()
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            commands.append(shlex.split(line))
    return commands


def test_readme_example_is_cpu_sized_and_names_the_input_size():
    """The schedule a reader runs as written: a narrow model, a few hundred iterations, and the
    input-size keys spelled out (the example's own numbers, not the test's smaller ones)."""
    train = readme_example()[1]
    rest = train[train.index("DATASETS.TRAIN") :]  # KEY VALUE pairs from here on
    opts = dict(zip(rest[::2], rest[1::2]))
    assert float(opts["MODEL.SEMSEG_HEADS.WIDTH_SCALE"]) <= 0.25
    assert int(opts["SOLVER.MAX_ITER"]) <= 1000
    for key in ("INPUT.MIN_SIZE_TRAIN", "INPUT.MAX_SIZE_TRAIN", "INPUT.MIN_SIZE_TEST", "INPUT.MAX_SIZE_TEST"):
        assert key in opts


def test_readme_example_trains_evaluates_and_draws(tmp_path):
    write_folder(str(tmp_path / "data" / "train"), 6, seed=0)
    write_folder(str(tmp_path / "data" / "val"), 3, seed=1)
    commands = readme_example()
    assert [c[1] for c in commands] == [
        "tools/validate_dataset.py",
        "tools/train_net.py",
        "tools/train_net.py",
        "tools/demo.py",
    ]
    env = {**os.environ, "PYTHONPATH": REPO}
    outputs = []
    for cmd in commands:
        cmd = [sys.executable] + [
            os.path.join(REPO, a) if a.startswith(("tools/", "configs/")) else a for a in cmd[1:]
        ]
        cmd += SMALL_DEMO if cmd[1].endswith("demo.py") else []
        cmd += SMALL_TRAIN if cmd[1].endswith("train_net.py") else []
        run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, f"{shlex.join(cmd)}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
        outputs.append(run.stdout + run.stderr)
    assert "OK (6 image/mask pairs checked)" in outputs[0]
    # Every tool prints what registration decided: encoding, values, classes.
    for log in outputs:
        assert "masks read as binary 0/255 (values found: 0, 255): 0 -> class 0, 255 -> class 1" in log
    for log in outputs[1:]:
        assert "Dataset 'my_val': 3 image/mask pair(s)" in log and "classes: 0 'background', 1 'chair'" in log
    run_dir = tmp_path / "output" / "my_unet"
    assert (run_dir / "model_final.pth").is_file()
    for log in outputs[1:3]:  # training ends with an evaluation; then --eval-only
        table = log.split("Evaluation results:")[-1]
        assert "my_val" in table and "IoU" in table
    assert (run_dir / "inference" / "my_val" / "sem_seg_evaluation.pth").is_file()
    drawn = sorted(p.name for p in (tmp_path / "vis").iterdir())
    assert drawn == ["photo_0.png", "photo_1.png", "photo_2.png"]
    assert Image.open(tmp_path / "vis" / "photo_0.png").size == (256, 256)


@pytest.fixture(scope="module")
def three_classes(tmp_path_factory):
    root = tmp_path_factory.mktemp("three")
    write_folder(str(root), 3, seed=2, mask_values=(0, 1, 2))
    register_folder_dataset("cli_three", str(root / "images"), str(root / "masks"))
    return root


def test_num_classes_follows_the_dataset_unless_given(three_classes):
    opts = ["DATASETS.TRAIN", "('cli_three',)"]
    cfg = get_semseg_heads_cfg(UNET, opts)
    assert cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES == 2  # the config's
    fit_num_classes(cfg, opts, ["cli_three"])
    assert cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES == 3
    opts += ["MODEL.SEM_SEG_HEAD.NUM_CLASSES", "2"]
    cfg = get_semseg_heads_cfg(UNET, opts)
    with pytest.raises(
        ValueError,
        match=r"MODEL.SEM_SEG_HEAD.NUM_CLASSES is 2 on the command line .*photo_0\.png.* holds class id 2",
    ):
        fit_num_classes(cfg, opts, ["cli_three"])


def test_train_net_refuses_an_unregistered_dataset(tmp_path):
    run = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "train_net.py"), "--config-file", UNET]
        + ["DATASETS.TRAIN", "('my_nowhere',)", "MODEL.DEVICE", "cpu", "OUTPUT_DIR", str(tmp_path)],
        env={**os.environ, "PYTHONPATH": REPO},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "DATASETS.TRAIN names dataset 'my_nowhere', which is not registered" in run.stderr
    assert "--dataset my_nowhere=IMAGES_DIR:MASKS_DIR" in run.stderr


def test_train_net_refuses_weights_of_another_config(tmp_path):
    """Weights that do not fit the model their run's config.yaml describes (the FCN it names,
    built in place of the --config-file's U-Net): an error naming that config, not a table
    from random weights."""
    fcn_run = tmp_path / "fcn_run"
    fcn_run.mkdir()
    fcn = os.path.join(REPO, "configs", "ChairSegments", "fcn32s.yaml")
    (fcn_run / "config.yaml").write_text(get_semseg_heads_cfg(fcn, ["MODEL.DEVICE", "cpu"]).dump())
    torch.save({"model": {"backbone.conv1_1.weight": torch.zeros(4, 3, 3, 3)}}, fcn_run / "model_final.pth")
    run = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "train_net.py"), "--config-file", UNET, "--eval-only"]
        + ["MODEL.WEIGHTS", str(fcn_run / "model_final.pth"), "MODEL.DEVICE", "cpu"]
        + ["MODEL.SEMSEG_HEADS.WIDTH_SCALE", "0.125", "OUTPUT_DIR", str(tmp_path / "out")],
        env={**os.environ, "PYTHONPATH": REPO},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr[-3000:]
    assert f"Model keys from the run's {fcn_run / 'config.yaml'}: MODEL.META_ARCHITECTURE FCN" in run.stdout
    assert "match only 0 of the model's" in run.stderr and "fcn_run/config.yaml" in run.stderr
    assert "META_ARCHITECTURE FCN" in run.stderr and "MODEL.WEIGHTS_ALLOW_PARTIAL True" in run.stderr


def _demo(tmp_path, *argv, opts=()):
    demo = load_tool("demo")
    return demo.main(["--config-file", UNET, *argv, "--opts", "MODEL.DEVICE", "cpu", *opts])


def test_demo_misuse_is_one_line(tmp_path, capsys):
    for name in ("a", "b"):
        Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / f"{name}.jpg")
    weights = ("MODEL.WEIGHTS", str(tmp_path / "unused.pth"))
    assert _demo(tmp_path, "--input", str(tmp_path / "a.jpg"), "--output", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err
    assert "MODEL.WEIGHTS is empty" in err and "--random-weights" in err
    status = _demo(
        tmp_path, "--input", str(tmp_path / "*.jpg"), "--output", str(tmp_path / "x.png"), opts=weights
    )
    err = capsys.readouterr().err
    assert status == 2 and "one PNG file but --input gives 2 images" in err
    assert not (tmp_path / "x.png").exists()
    status = _demo(
        tmp_path, "--input", str(tmp_path / "*.tif"), "--output", str(tmp_path / "o"), opts=weights
    )
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "matches no file" in err
    status = _demo(
        tmp_path, "--input", str(tmp_path / "a.jpg"), "--output", str(tmp_path / "o"),
        opts=(*weights, "DATASETS.TEST", "('my_nowhere',)"),
    )  # fmt: skip
    err = capsys.readouterr().err
    assert status == 2 and "DATASETS.TEST names dataset 'my_nowhere', which is not registered" in err
