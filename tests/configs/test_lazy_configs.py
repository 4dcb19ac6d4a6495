"""LazyConfig twins (configs/**/<name>.py) against their yacs configs (<name>.yaml).

Each pair builds the same network: the same parameter count at paper width (built on the meta
device: no memory, no initialisation) and, at a small width (yacs MODEL.SEMSEG_HEADS.WIDTH_SCALE,
the lazy side the same widths through its backbone / head arguments), the same outputs on the
same input once the yacs model's weights are loaded into the lazy one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from detectron2.config import LazyConfig, instantiate
from detectron2.modeling import META_ARCH_REGISTRY, build_model

import semseg_heads  # noqa: F401  (registers the models)
from semseg_heads.config import get_semseg_heads_cfg
from semseg_heads.modeling.layers import scaled_width

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
SMALL = 0.0625
# The model configs and their scratch/ versions (other folders, e.g. recipes/, are variants
# of these and need no twin of their own).
FOLDERS = [CONFIGS / "ChairSegments", CONFIGS / "ChairSegments" / "scratch"]
YAML_PAIRS = sorted(
    str(p.relative_to(CONFIGS).with_suffix(""))
    for folder in FOLDERS
    for p in folder.glob("*.yaml")
    if not p.stem.startswith("Base-")
)
SEMANTIC = [n for n in YAML_PAIRS if "mask_rcnn" not in Path(n).stem]


def yacs_cfg(name: str, width_scale: float | None):
    cfg = get_semseg_heads_cfg(str(CONFIGS / f"{name}.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    if width_scale is not None:
        cfg.MODEL.SEMSEG_HEADS.WIDTH_SCALE = width_scale
    return cfg


def lazy_cfg(name: str, width_scale: float | None):
    """The lazy config, with the widths WIDTH_SCALE gives the yacs twin set on its arguments."""
    cfg = LazyConfig.load(str(CONFIGS / f"{name}.py"))
    if width_scale is None:
        return cfg
    s = lambda w: scaled_width(w, width_scale)  # noqa: E731
    m = cfg.model
    if "widths" in m.backbone:  # VGG16 (FCN, DeconvNet, dilated front-end)
        m.backbone.widths = [s(w) for w in m.backbone.widths]
        m.backbone.fc_width = s(m.backbone.fc_width)
    elif "base_width" in m.backbone:  # U-Net
        m.backbone.base_width = s(m.backbone.base_width)
    else:  # dilated ResNet: stem, res2 and bottleneck widths, and the FCN head's conv
        m.backbone.stem.out_channels = s(m.backbone.stem.out_channels)
        m.backbone.stages.res2_out_channels = s(m.backbone.stages.res2_out_channels)
        m.backbone.stages.bottleneck_channels = s(m.backbone.stages.bottleneck_channels)
        m.sem_seg_head.conv_dims = s(m.sem_seg_head.conv_dims)
    return cfg


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_every_yaml_config_has_a_lazy_twin_and_back() -> None:
    lazy = sorted(
        str(p.relative_to(CONFIGS).with_suffix("")) for p in (CONFIGS / "ChairSegments").rglob("*.py")
    )
    assert lazy == YAML_PAIRS


@pytest.mark.parametrize("name", SEMANTIC)
def test_same_parameter_count_at_paper_width(name: str) -> None:
    cfg = yacs_cfg(name, None)
    with torch.device("meta"):
        yacs = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg)
        lazy = instantiate(lazy_cfg(name, None).model)
    assert type(lazy) is type(yacs)
    assert count(lazy) == count(yacs) > 1_000_000


@pytest.mark.parametrize("name", SEMANTIC)
def test_same_output_at_small_width(name: str) -> None:
    torch.manual_seed(0)
    yacs = build_model(yacs_cfg(name, SMALL)).eval()
    torch.manual_seed(1)  # other initial weights: equal outputs must come from the loaded ones
    lazy = instantiate(lazy_cfg(name, SMALL).model).eval()
    assert count(lazy) == count(yacs)
    # 48 px is no multiple of 32: both pad the input the same way.
    assert lazy.backbone.size_divisibility == yacs.backbone.size_divisibility
    lazy.load_state_dict(yacs.state_dict(), strict=True)
    g = torch.Generator().manual_seed(0)
    inputs = [{"image": torch.randint(0, 256, (3, 64, 48), generator=g).float(), "height": 64, "width": 48}]
    with torch.no_grad():
        expected = yacs(inputs)[0]["sem_seg"]
        got = lazy(inputs)[0]["sem_seg"]
    assert got.shape == expected.shape == (2, 64, 48)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)

    # The same losses (loss type, class weights, ignore value) in training mode; the same seed
    # before each forward gives both the same dropout masks.
    labels = torch.randint(0, 2, (64, 48), generator=g)
    labels[:4] = 255
    batch = [dict(inputs[0], sem_seg=labels)]
    losses = []
    for model in (yacs, lazy):
        model.train()
        torch.manual_seed(0)
        losses.append({k: v.item() for k, v in model(batch).items()})
    assert losses[1] == losses[0]


@pytest.mark.parametrize("name", [n for n in YAML_PAIRS if n not in SEMANTIC])
def test_mask_rcnn_twins_build_the_same_model(name: str) -> None:
    """Detectron2's GeneralizedRCNN from its model zoo's LazyConfig pieces: the same parameters
    and, with the yacs weights loaded, the same detections on the same image."""
    # Every detection kept on both sides, so random weights still give some to compare.
    cfg = yacs_cfg(name, None)
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    lazy_model = lazy_cfg(name, None).model
    lazy_model.roi_heads.box_predictor.test_score_thresh = 0.0
    torch.manual_seed(0)
    yacs = build_model(cfg).eval()
    torch.manual_seed(1)
    lazy = instantiate(lazy_model).eval()
    assert count(lazy) == count(yacs)
    lazy.load_state_dict(yacs.state_dict(), strict=True)
    g = torch.Generator().manual_seed(0)
    inputs = [
        {"image": torch.randint(0, 256, (3, 128, 128), generator=g).float(), "height": 128, "width": 128}
    ]
    with torch.no_grad():
        # Before detector_postprocess, which drops the empty boxes random weights regress to.
        expected = yacs.inference(inputs, do_postprocess=False)[0]
        got = lazy.inference(inputs, do_postprocess=False)[0]
    assert len(got) == len(expected) > 0
    torch.testing.assert_close(got.pred_boxes.tensor, expected.pred_boxes.tensor, rtol=0, atol=0)
    torch.testing.assert_close(got.scores, expected.scores, rtol=0, atol=0)
    torch.testing.assert_close(got.pred_masks, expected.pred_masks, rtol=0, atol=0)


def _per_parameter(optimizer: torch.optim.Optimizer, model: torch.nn.Module) -> dict:
    """Each parameter's effective hyper-parameters, by name (the optimizer's defaults filled in)."""
    names = {id(p): n for n, p in model.named_parameters()}
    keys = ("lr", "weight_decay", "momentum", "nesterov", "dampening", "betas", "eps")
    return {
        names[id(p)]: {k: group[k] for k in keys if k in group}
        for group in optimizer.param_groups
        for p in group["params"]
    }


@pytest.mark.parametrize("name", YAML_PAIRS)
def test_same_recipe(name: str) -> None:
    """Data, optimizer (per parameter), learning-rate schedule, length, periods and start."""
    from detectron2.solver import build_lr_scheduler

    from semseg_heads.engine import build_optimizer

    cfg = yacs_cfg(name, None)
    cfg.MODEL.WEIGHTS = get_semseg_heads_cfg(str(CONFIGS / f"{name}.yaml")).MODEL.WEIGHTS
    lazy = lazy_cfg(name, None)
    with torch.device("meta"):  # parameters only, no memory
        yacs_model = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg)
        lazy_model = instantiate(lazy.model)
    yacs_opt = build_optimizer(cfg, yacs_model)
    lazy.optimizer.params.model = lazy_model
    lazy_opt = instantiate(lazy.optimizer)
    assert type(lazy_opt) in type(yacs_opt).__mro__  # yacs may add gradient clipping (a subclass)
    assert _per_parameter(lazy_opt, lazy_model) == _per_parameter(yacs_opt, yacs_model)

    max_iter = cfg.SOLVER.MAX_ITER
    yacs_schedule = build_lr_scheduler(cfg, yacs_opt)._multiplier
    lazy_schedule = instantiate(lazy.lr_multiplier)
    for it in (0, 10, 99, 150, 999, max_iter // 2, int(0.75 * max_iter), max_iter - 1):
        assert lazy_schedule(it / max_iter) == pytest.approx(yacs_schedule(it / max_iter)), it

    assert lazy.train.max_iter == max_iter
    assert lazy.train.init_checkpoint == cfg.MODEL.WEIGHTS
    assert lazy.train.checkpointer.period == cfg.SOLVER.CHECKPOINT_PERIOD
    assert lazy.train.eval_period == cfg.TEST.EVAL_PERIOD
    assert lazy.dataloader.train.total_batch_size == cfg.SOLVER.IMS_PER_BATCH
    assert [lazy.dataloader.train.dataset.names] == list(cfg.DATASETS.TRAIN)
    assert [lazy.dataloader.test.dataset.names] == list(cfg.DATASETS.TEST)
    assert lazy.dataloader.train.mapper.image_format == cfg.INPUT.FORMAT
    resize = instantiate(lazy.dataloader.train.mapper.augmentations[0])
    assert tuple(resize.short_edge_length) == tuple(cfg.INPUT.MIN_SIZE_TRAIN)
    assert resize.max_size == cfg.INPUT.MAX_SIZE_TRAIN
