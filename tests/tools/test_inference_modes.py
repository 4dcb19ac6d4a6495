"""--eval-only with TEST.INFERENCE_MODE and TEST.AUG: the test loader keeps the images as loaded
in modes "whole" / "slide", and TTA results come beside the plain ones, as in Detectron2."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from detectron2.engine import default_argument_parser
from detectron2.modeling import build_model
from tools_helpers import REPO, fresh_logs

from semseg_heads.config import get_semseg_heads_cfg
from semseg_heads.engine import Trainer

UNET = os.path.join(REPO, "configs", "ChairSegments", "unet.yaml")


def opts(val: str, out, *extra: str) -> list[str]:
    return [
        "MODEL.DEVICE", "cpu", "MODEL.SEMSEG_HEADS.WIDTH_SCALE", "0.0625", "DATASETS.TEST", f"('{val}',)",
        "DATALOADER.NUM_WORKERS", "0", "OUTPUT_DIR", str(out), *extra,
    ]  # fmt: skip


@pytest.mark.parametrize(("mode", "side"), [("resize", 32), ("slide", 64), ("whole", 64)])
def test_test_loader_resizes_only_in_resize_mode(tiny_semseg, tmp_path, mode, side):
    _, val = tiny_semseg
    cfg = get_semseg_heads_cfg(
        UNET, opts(val, tmp_path, "INPUT.MIN_SIZE_TEST", "32", "TEST.INFERENCE_MODE", mode)
    )
    batch = next(iter(Trainer.build_test_loader(cfg, val)))
    assert tuple(batch[0]["image"].shape[1:]) == (side, side)


def test_eval_only_with_tta_and_sliding_window(train_net, tiny_semseg, tmp_path):
    _, val = tiny_semseg
    fresh_logs()
    extra = [
        "TEST.AUG.ENABLED", "True", "TEST.AUG.MIN_SIZES", "(48, 64)", "TEST.INFERENCE_MODE", "slide",
        "TEST.SLIDING_WINDOW.TILE_SIZE", "48", "TEST.SLIDING_WINDOW.STRIDE", "32",
    ]  # fmt: skip
    args = default_argument_parser().parse_args(
        ["--config-file", UNET, "--eval-only", *opts(val, tmp_path, *extra)]
    )
    res = train_net.main(args)
    assert {"sem_seg", "chair_segments", "sem_seg_TTA", "chair_segments_TTA"} <= set(res)
    for key in ("IoU", "mIoU"):
        assert np.isfinite(res["chair_segments_TTA"][key])
    log = (tmp_path / "log.txt").read_text()
    assert f"{val} (TTA)" in log


def test_inference_mode_on_a_model_without_it_is_an_error():
    from detectron2 import model_zoo

    cfg = get_semseg_heads_cfg(
        model_zoo.get_config_file("Misc/semantic_R_50_FPN_1x.yaml"),
        ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", "TEST.INFERENCE_MODE", "slide"],
    )
    with pytest.raises(ValueError, match="TEST.INFERENCE_MODE resize"):
        Trainer.test(cfg, build_model(cfg))


def test_training_ends_with_a_tta_evaluation(train_net, tiny_semseg, tmp_path):
    """As Detectron2's tools/train_net.py: TEST.AUG.ENABLED adds a final evaluation with TTA."""
    train, val = tiny_semseg
    fresh_logs()
    extra = [
        "DATASETS.TRAIN", f"('{train}',)", "SOLVER.MAX_ITER", "2", "SOLVER.IMS_PER_BATCH", "2",
        "TEST.AUG.ENABLED", "True",
    ]  # fmt: skip
    args = default_argument_parser().parse_args(["--config-file", UNET, *opts(val, tmp_path, *extra)])
    res = train_net.main(args)
    assert (tmp_path / "model_final.pth").is_file()
    assert any((tmp_path / "inference_TTA" / val).iterdir())
    assert {"sem_seg", "sem_seg_TTA"} <= set(res)
    # Before the writer, so its metrics reach metrics.json (Detectron2's registers it after).
    written = [json.loads(line) for line in (tmp_path / "metrics.json").read_text().splitlines()]
    assert any("sem_seg_TTA/mIoU" in r for r in written)
