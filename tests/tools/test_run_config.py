"""A run folder carries its config: the Trainer writes config.yaml with the training classes,
``config_for_weights`` gives the deploy tools that run's model keys, the export's JSON names
the run's classes, and the README's deploy commands run as written on a run folder laid out
as ``make demo`` leaves it (a tiny one, trained here by tools/train_net.py)."""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from detectron2.data import MetadataCatalog
from PIL import Image
from tools_helpers import REPO

from semseg_heads.config import (
    config_for_weights,
    get_semseg_heads_cfg,
    model_metadata,
    run_config_path,
    save_run_config,
)

UNET = os.path.join(REPO, "configs", "ChairSegments", "unet.yaml")
SOFA = "test_run_config_sofa_train"  # a user's two classes, not Chair Segments'


def write_run(tmp_path: Path, *opts: str) -> Path:
    """A run folder: config.yaml as the Trainer writes it (classes floor/sofa) + weights."""
    MetadataCatalog.get(SOFA).set(stuff_classes=["floor", "sofa"], stuff_colors=[[0, 0, 0], [255, 140, 0]])
    cfg = get_semseg_heads_cfg(
        UNET,
        [
            "MODEL.SEMSEG_HEADS.WIDTH_SCALE", "0.0625", "SOLVER.AMP.ENABLED", "True",
            "INPUT.MIN_SIZE_TEST", "48", "INPUT.MAX_SIZE_TEST", "48", "MODEL.DEVICE", "cpu",
            "DATASETS.TRAIN", f"('{SOFA}',)", "OUTPUT_DIR", str(tmp_path / "run"), *opts,
        ],
    )  # fmt: skip
    save_run_config(cfg)
    from semseg_heads.engine import Trainer

    torch.save({"model": Trainer.build_model(cfg).state_dict()}, tmp_path / "run" / "model_final.pth")
    return tmp_path / "run"


def test_config_for_weights_takes_the_runs_model_keys(tmp_path):
    run = write_run(tmp_path)
    weights = str(run / "model_final.pth")
    assert run_config_path(weights) == str(run / "config.yaml")
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["MODEL"]["SEMSEG_HEADS"]["CLASS_NAMES"] == ["floor", "sofa"]

    cfg, taken = config_for_weights(UNET, ["MODEL.WEIGHTS", weights])
    assert cfg.MODEL.SEMSEG_HEADS.WIDTH_SCALE == 0.0625 and cfg.SOLVER.AMP.ENABLED
    assert cfg.INPUT.MIN_SIZE_TEST == 48 and cfg.MODEL.WEIGHTS == weights
    assert list(cfg.DATASETS.TEST) == ["chair_segments_64_val"]  # the config file's, not a model key
    line = taken.message()
    assert str(run / "config.yaml") in line and "MODEL.SEMSEG_HEADS.WIDTH_SCALE 0.0625" in line
    # the page's and the demo's classes: the run's, though the test dataset names background/chair
    assert list(model_metadata(cfg).stuff_classes) == ["floor", "sofa"]
    assert list(model_metadata(cfg).stuff_colors) == [(0, 0, 0), (255, 140, 0)]

    # a key on the command line wins over the run's
    cfg, taken = config_for_weights(UNET, ["MODEL.WEIGHTS", weights, "INPUT.MIN_SIZE_TEST", "96"])
    assert cfg.INPUT.MIN_SIZE_TEST == 96 and "INPUT.MIN_SIZE_TEST" not in taken.changed

    # no --config-file: the run's config.yaml is the config
    cfg, taken = config_for_weights("", ["MODEL.WEIGHTS", weights])
    assert taken.whole and list(cfg.DATASETS.TRAIN) == [SOFA] and "no --config-file" in taken.message()
    cfg, _ = config_for_weights("", [], weights=weights)  # tools/serve.py --weights
    assert cfg.MODEL.WEIGHTS == weights and cfg.MODEL.SEMSEG_HEADS.WIDTH_SCALE == 0.0625


def test_weights_outside_a_run_folder(tmp_path):
    torch.save({"model": {}}, tmp_path / "loose.pth")
    cfg, taken = config_for_weights(UNET, ["MODEL.WEIGHTS", str(tmp_path / "loose.pth")])
    assert taken is None and cfg.MODEL.SEMSEG_HEADS.WIDTH_SCALE == 1.0
    with pytest.raises(ValueError, match=r"no --config-file given and no config.yaml beside the weights"):
        config_for_weights("", ["MODEL.WEIGHTS", str(tmp_path / "loose.pth")])


def test_export_json_names_the_runs_classes(tmp_path):
    """Exported with the chair config file, labelled with the classes the model learnt."""
    run = write_run(tmp_path)
    cmd = [
        sys.executable, os.path.join(REPO, "tools", "export_model.py"), "--config-file", UNET,
        "--format", "torchscript", "--output", str(tmp_path / "export"),
        "MODEL.WEIGHTS", str(run / "model_final.pth"),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"Model keys from the run's {run / 'config.yaml'}" in done.stdout
    side = json.loads((tmp_path / "export" / "model.ts.json").read_text())
    assert side["classes"] == ["floor", "sofa"] and side["colors"] == [[0, 0, 0], [255, 140, 0]]
    assert side["preprocessing"]["min_size_test"] == 48


# ---------------------------------------------------------------------------------------------
# The README's deploy commands on a run folder laid out as `make demo` leaves it.


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1"}


def _marked_block(name: str) -> str:
    """The fenced block between ``<!-- name -->`` markers in the README (or a doc it moved to)."""
    for doc in [Path(REPO, "README.md"), *sorted(Path(REPO, "docs").glob("*.md"))]:
        found = re.search(rf"<!-- {name} -->\s*```\w*\n(.*?)```", doc.read_text(), re.S)
        if found:
            return found.group(1)
    pytest.fail(f"no <!-- {name} --> block in README.md or docs/*.md")


def readme_deploy_commands() -> list[tuple[dict[str, str], list[str]]]:
    """(environment assignments, argv) of each command in the README's deploy block."""
    commands = []
    for line in _marked_block("deploy-commands").replace("\\\n", " ").splitlines():
        argv = shlex.split(line, comments=True)
        env = {}
        while argv and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", argv[0]):
            k, v = argv.pop(0).split("=", 1)
            env[k] = v
        if argv:
            commands.append((env, argv))
    return commands


def write_chair064(root: Path, n_train: int = 6, n_val: int = 3) -> None:
    """Chair064's layout (<split>/image, <split>/mask with 0/255 masks) with a box per image."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val)):
        for sub in ("image", "mask"):
            (root / "Chair064" / split / sub).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = rng.integers(0, 90, (64, 64, 3), dtype=np.uint8)
            mask = np.zeros((64, 64), np.uint8)
            y, x = rng.integers(4, 30, 2)
            mask[y : y + 24, x : x + 20] = 255
            img[mask > 0] = (210, 170, 40)
            Image.fromarray(img).save(root / "Chair064" / split / "image" / f"{i}.png")
            Image.fromarray(mask).save(root / "Chair064" / split / "mask" / f"{i}.png")


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(cmd, cwd=cwd, env={**_env(), **env}, capture_output=True, text=True, timeout=600)
    out = done.stdout + done.stderr
    assert done.returncode == 0, f"{shlex.join(cmd)}\n{out[-4000:]}"
    assert "Traceback" not in out, out[-4000:]
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post_png(url: str, rgb: np.ndarray) -> dict:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    head = '--b0undary\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\n\r\n'
    body = head.encode() + buf.getvalue() + b"\r\n--b0undary--\r\n"
    req = urllib.request.Request(url, body, {"Content-Type": "multipart/form-data; boundary=b0undary"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


def _serve(argv: list[str], cwd: Path, env: dict[str, str]) -> dict:
    """Start the README's serve command on a free port, segment one upload, stop it; the reply."""
    port = _free_port()
    log = open(cwd / "serve.log", "w")
    server = subprocess.Popen(
        [*argv, "--port", str(port), "--samples", "0"], cwd=cwd, env={**_env(), **env}, stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5):
                    break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, (cwd / "serve.log").read_text()
                time.sleep(0.5)
        return _post_png(f"http://127.0.0.1:{port}/predict", np.full((64, 64, 3), 90, np.uint8))
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def test_readme_deploy_commands_run_on_a_main_job_run_folder(tmp_path, monkeypatch):
    commands = readme_deploy_commands()
    tools = [next(a for a in argv if a.startswith("tools/")) for _, argv in commands]
    assert sorted(set(tools)) == [
        "tools/demo.py",
        "tools/export_model.py",
        "tools/serve.py",
        "tools/train_net.py",
    ]

    # make demo's layout: data generated under output/main_job/data, the run in output/main_job
    write_chair064(tmp_path / "output" / "main_job" / "data" / "ChairSegments")
    train = [
        sys.executable, os.path.join(REPO, "tools", "train_net.py"), "--config-file", UNET,
        "MODEL.SEMSEG_HEADS.WIDTH_SCALE", "0.0625", "SOLVER.MAX_ITER", "3", "SOLVER.IMS_PER_BATCH", "2",
        "SOLVER.WARMUP_ITERS", "0", "TEST.EVAL_PERIOD", "0", "DATALOADER.NUM_WORKERS", "0",
        "SOLVER.AMP.ENABLED", "True", "MODEL.DEVICE", "cpu", "OUTPUT_DIR", "output/main_job",
    ]  # fmt: skip
    _run(train, tmp_path, {"DETECTRON2_DATASETS": "output/main_job/data"})
    run_cfg = yaml.safe_load((tmp_path / "output" / "main_job" / "config.yaml").read_text())
    assert run_cfg["MODEL"]["SEMSEG_HEADS"]["CLASS_NAMES"] == ["background", "chair"]  # the Trainer's
    (tmp_path / "imgs").mkdir()
    for i in range(2):
        Image.open(tmp_path / "output/main_job/data/ChairSegments/Chair064/val/image" / f"{i}.png").save(
            tmp_path / "imgs" / f"photo_{i}.png"
        )

    served = None
    for env, argv in commands:
        # `.venv/bin/python tools/x.py`: this interpreter and this checkout's tools
        cmd = [sys.executable] + [
            os.path.join(REPO, a) if a.startswith(("tools/", "configs/")) else a for a in argv[1:]
        ]
        if argv[1] == "tools/serve.py":
            served = _serve(cmd, tmp_path, env)
            continue
        out = _run(cmd, tmp_path, env)
        if "--onnx" not in argv:  # each of them built the run's model and said so
            assert "output/main_job/config.yaml" in out, out[-3000:]
        if argv[1] == "tools/train_net.py":
            assert "Evaluation results:" in out and "chair_segments_64_val" in out
    assert sorted(p.name for p in (tmp_path / "vis").iterdir()) == ["photo_0.png", "photo_1.png"]
    side = json.loads((tmp_path / "export" / "model.onnx.json").read_text())
    assert side["classes"] == ["background", "chair"]
    assert served is not None and sorted(served["class_shares"]) == ["background", "chair"]

    # the README's Python example, in the folder the commands ran in
    monkeypatch.chdir(tmp_path)
    bgr_image = np.full((64, 64, 3), 90, np.uint8)
    scope = {"bgr_image": bgr_image}
    exec(_marked_block("onnx-predictor-example"), scope)
    assert tuple(scope["classes"].shape) == (64, 64)
