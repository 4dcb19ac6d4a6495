"""Acceptance: every config in configs/ChairSegments/, scratch/ and recipes/ trains
a few iterations through tools/train_net.py's own entry point (``main(args)``) on a tiny
generated Chair064, then ``--eval-only`` on the written model_final.pth prints the evaluator
results.

One process, one model after another: 8 train / 4 val images at 64x64, WIDTH_SCALE 1/16,
2 iterations of batch 2; Mask R-CNN at 64x64 input. ``MODEL.WEIGHTS ""``: the papers' configs
name ImageNet starts (``torchvision://``), which need the network and full widths; their
handler is tested in tests/modeling/test_torchvision_hub.py.
"""

import glob
import math
import os

import pytest
from detectron2.data import MetadataCatalog
from detectron2.data.datasets.coco import convert_to_coco_json
from detectron2.engine import default_argument_parser
from tools_helpers import REPO, fresh_logs, load_tool

from chairseg.data.synthetic import generate_chair_segments
from semseg_heads.data import register_chair_segments
from semseg_heads.data.chair_segments import dataset_names, register_builtin_chair_segments

CONFIG_DIR = os.path.join(REPO, "configs", "ChairSegments")
PAPER = {
    "deconvnet", "dilated_basic", "dilated_frontend", "dilated_large", "fcn16s", "fcn32s",
    "fcn8s", "fcn_R_101", "fcn_R_50", "unet",
}  # fmt: skip
# From random weights: a scratch variant of every semantic config, and the CPU Mask R-CNN.
# The CPU recipes of issue 18 (configs/ChairSegments/recipes/).
RECIPES = {
    f"recipes/{n}"
    for n in (
        "deconvnet", "dilated_basic", "dilated_frontend", "dilated_large", "fcn16s", "fcn32s",
        "fcn8s", "fcn_R_101", "fcn_R_50", "mask_rcnn_R_18_FPN_cpu", "mask_rcnn_R_18_FPN_semstart",
        "mask_rcnn_unet_semstart", "semantic_fpn_R_18", "unet", "unet_border", "unet_border_lovasz_ema",
        "unet_long",
    )
}  # fmt: skip
EXPECTED = PAPER | {"mask_rcnn_R_50_FPN"} | {f"scratch/{n}" for n in PAPER | {"mask_rcnn_R_18_FPN"}} | RECIPES
SCRATCH = glob.glob(os.path.join(CONFIG_DIR, "scratch", "*.yaml")) + glob.glob(
    os.path.join(CONFIG_DIR, "recipes", "*.yaml")
)
CONFIGS = sorted(glob.glob(os.path.join(CONFIG_DIR, "*.yaml"))) + sorted(
    c
    for c in SCRATCH
    if not os.path.basename(c).startswith("Base-")  # Base-*: shared recipe
)


def _name(config: str) -> str:
    return os.path.splitext(os.path.relpath(config, CONFIG_DIR))[0]


SMALL = [
    "MODEL.DEVICE", "cpu", "MODEL.SEMSEG_HEADS.WIDTH_SCALE", "0.0625",
    "SOLVER.MAX_ITER", "2", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.WARMUP_ITERS", "0",
    "SOLVER.LOG_PERIOD", "1", "TEST.EVAL_PERIOD", "0", "DATALOADER.NUM_WORKERS", "0",
    "MODEL.WEIGHTS", "",
]  # fmt: skip
TINY_INPUT = [
    "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64",
    "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "64",
]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_chair064(tmp_path_factory):
    """A generated Chair064 (8 train / 4 val) registered under the builtin names."""
    root = tmp_path_factory.mktemp("chair_segments")
    generate_chair_segments(str(root), 64, {"train": 8, "val": 4}, seed=0, workers=1, progress=False)
    register_chair_segments(str(root), resolutions=[64])
    # COCOEvaluator converts the instance val split to COCO json in the first evaluation's
    # output folder and keeps that path in the dataset's metadata for the process; a test's
    # tmp_path is deleted when it passes (pytest.ini), so the module's fixture owns the file.
    instance_val = dataset_names(64, "val")[1]
    coco_json = str(root / f"{instance_val}_coco_format.json")
    convert_to_coco_json(instance_val, coco_json)
    MetadataCatalog.get(instance_val).json_file = coco_json
    yield root
    register_builtin_chair_segments()  # point the names back at $DETECTRON2_DATASETS


def test_every_config_is_covered():
    assert {_name(c) for c in CONFIGS} == EXPECTED


@pytest.mark.parametrize("config", CONFIGS, ids=_name)
def test_config_trains_then_evaluates(config, tiny_chair064, tmp_path):
    train_net = load_tool("train_net")
    out = tmp_path / "run"
    opts = SMALL + TINY_INPUT + ["OUTPUT_DIR", str(out)]

    fresh_logs()
    args = default_argument_parser().parse_args(["--config-file", config, *opts])
    train_net.main(args)
    weights = out / "model_final.pth"
    assert weights.is_file()

    fresh_logs()
    args = default_argument_parser().parse_args(
        ["--config-file", config, "--eval-only", *opts, "MODEL.WEIGHTS", str(weights)]
    )
    res = train_net.main(args)
    paper = res["chair_segments"]
    assert paper["num_images"] == 4
    for key in ("Prec", "IoU", "Dice", "mIoU"):
        assert key in paper and not math.isnan(paper["Prec"])
    if "mask_rcnn" in config:
        assert {"bbox", "segm"} <= set(res)
    else:
        assert res["sem_seg"]["mIoU"] == pytest.approx(paper["mIoU"])
    log = (out / "log.txt").read_text()
    assert "Loading from" in log and str(weights) in log
    assert "copypaste: Task: chair_segments" in log
    assert "Prec." in log.split("Evaluation results:")[-1]  # the table train_net prints

    if _name(config) in ("unet", "mask_rcnn_R_50_FPN"):
        # demo.py draws both kinds of output (sem_seg / instances) on two val images.
        val_images = sorted((tiny_chair064 / "Chair064" / "val" / "image").iterdir())[:2]
        argv = ["--config-file", config, "--input", *map(str, val_images), "--output", str(tmp_path / "vis")]
        argv += ["--confidence-threshold", "0.0", "--opts", *opts, "MODEL.WEIGHTS", str(weights)]
        assert load_tool("demo").main(argv) == 0
        assert sorted(p.name for p in (tmp_path / "vis").iterdir()) == [p.name for p in val_images]
