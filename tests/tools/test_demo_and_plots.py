"""tools/demo.py on a folder with a corrupt image; tools/plot_metrics.py on a metrics.json."""

import json

import numpy as np
import pytest
from detectron2 import model_zoo
from PIL import Image
from tools_helpers import load_tool

from chairseg import metrics_plot
from semseg_heads.checkpoint import CheckpointLoadError, SafeDetectionCheckpointer
from semseg_heads.config import get_semseg_heads_cfg
from semseg_heads.engine import Predictor, Trainer

NATIVE_SEMSEG = model_zoo.get_config_file("Misc/semantic_R_50_FPN_1x.yaml")


@pytest.fixture(scope="module")
def native_weights(tiny_semseg, tmp_path_factory):
    """An untrained two-class SemanticSegmentor saved as a checkpoint, with its config opts."""
    _, val = tiny_semseg
    opts = [
        "MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "2",
        "DATASETS.TEST", f"('{val}',)", "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "64",
    ]  # fmt: skip
    model = Trainer.build_model(get_semseg_heads_cfg(NATIVE_SEMSEG, opts))
    out = tmp_path_factory.mktemp("weights")
    SafeDetectionCheckpointer(model, str(out)).save("model_final")
    return opts[:3] + [str(out / "model_final.pth")] + opts[4:]


def test_demo_folder_with_a_corrupt_image(native_weights, tmp_path, capsys):
    demo = load_tool("demo")
    inputs = tmp_path / "in"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    originals = {}
    for name in ("a", "b"):
        img = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(img).save(inputs / f"{name}.png")
        originals[name] = img
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but then nothing an image needs")
    (inputs / "notes.txt").write_text("not an image: skipped by extension")
    out = tmp_path / "out"
    argv = ["--config-file", NATIVE_SEMSEG, "--input", str(inputs), "--output", str(out), "--min-size", "0"]
    status = demo.main(argv + ["--opts", *native_weights])
    assert status == 1
    assert "broken.png" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]
    for name, img in originals.items():
        drawn = np.asarray(Image.open(out / f"{name}.png").convert("RGB"))
        assert drawn.shape == img.shape
        changed = np.any(drawn != img, axis=-1).mean()
        assert changed > 0.5, f"{name}.png: only {changed:.0%} of the pixels were drawn on"


def test_demo_upscales_small_images_and_reads_globs(native_weights, tmp_path):
    demo = load_tool("demo")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "one.jpg")
    out = tmp_path / "one_drawn.png"
    status = demo.main(
        ["--config-file", NATIVE_SEMSEG, "--input", str(tmp_path / "*.jpg"), "--output", str(out)]
        + ["--opts", *native_weights]
    )
    assert status == 0
    assert Image.open(out).size == (256, 256)


def test_plot_metrics(tmp_path):
    plot = load_tool("plot_metrics")
    rows = [{"iteration": i, "total_loss": 1 / (i + 1), "loss_sem_seg": 0.5 / (i + 1)} for i in range(5)]
    rows.append({"iteration": 4, "chair_segments/IoU": 40.0, "sem_seg/mIoU": 60.0})
    rows.append({"iteration": 2, "total_loss": 0.2})  # a resumed run rewrote iteration 2
    (tmp_path / "metrics.json").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    series = metrics_plot.series(metrics_plot.load_metrics(str(tmp_path / "metrics.json")))
    assert series["total_loss"] == ([0, 1, 2, 3, 4], [1.0, 0.5, 0.2, 0.25, 0.2])
    assert plot.main([str(tmp_path)]) == 0
    png = Image.open(tmp_path / "curves.png")
    assert png.size[0] > 600 and len(np.unique(np.asarray(png.convert("L")))) > 10


def test_plot_metrics_bad_line_names_file_and_line(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text('{"iteration": 0, "total_loss": 1.0}\n{"iteration": 1, "total_lo\n')
    with pytest.raises(ValueError, match=r"metrics.json, line 2"):
        metrics_plot.plot_metrics(str(path), str(tmp_path / "c.png"))


def test_predictor_refuses_a_corrupt_checkpoint(native_weights, tmp_path):
    bad = tmp_path / "model_final.pth"
    bad.write_bytes(b"PK\x03\x04 cut short")
    opts = list(native_weights)
    opts[opts.index("MODEL.WEIGHTS") + 1] = str(bad)
    with pytest.raises(CheckpointLoadError, match="model_final.pth"):
        Predictor(get_semseg_heads_cfg(NATIVE_SEMSEG, opts))
