"""Shared by tests/modeling: configs at small widths and generated images (no dataset needed)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from detectron2.config import CfgNode, get_cfg
from detectron2.modeling import build_model
from fvcore.nn import parameter_count

import semseg_heads  # noqa: F401  (registers the models)
from semseg_heads import add_semseg_heads_config

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "configs" / "ChairSegments"
# Every semantic config in the folder (tests/tools checks the folder holds exactly the expected ones).
MODEL_CONFIGS = tuple(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if not p.stem.startswith("mask_rcnn")))
SMALL_WIDTH = 0.0625


def load_tool(name: str):
    """tools/<name>.py by file path: tools/ is a folder of scripts, not a package."""
    spec = importlib.util.spec_from_file_location(f"modeling_tools_{name}", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def model_cfg(name: str, width_scale: float | None = SMALL_WIDTH, *opts) -> CfgNode:
    """The config of configs/ChairSegments/<name>.yaml on the CPU, at ``width_scale`` (None: paper)."""
    cfg = get_cfg()
    add_semseg_heads_config(cfg)
    cfg.merge_from_file(str(CONFIG_DIR / f"{name}.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    if width_scale is not None:
        cfg.MODEL.SEMSEG_HEADS.WIDTH_SCALE = width_scale
    cfg.merge_from_list(list(opts))
    return cfg


def build(name: str, width_scale: float | None = SMALL_WIDTH, *opts, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(model_cfg(name, width_scale, *opts))


def rectangles_batch(
    n: int = 4, height: int = 64, width: int = 64, seed: int = 0, snap: int = 1
) -> list[dict]:
    """``n`` images, each a bright rectangle ("chair", class 1) on a dark noisy background.

    Rectangles span 40-80% of each side; ``snap`` rounds their edges to multiples of it.
    """
    g = torch.Generator().manual_seed(seed)

    def span(size: int) -> tuple[int, int]:
        length = int(torch.randint(int(0.4 * size), int(0.8 * size) + 1, (1,), generator=g))
        start = int(torch.randint(0, size - length + 1, (1,), generator=g))
        start, end = round(start / snap) * snap, round((start + length) / snap) * snap
        return start, min(end, size)

    batch = []
    for _ in range(n):
        (h0, h1), (w0, w1) = span(height), span(width)
        label = torch.zeros(height, width, dtype=torch.long)
        label[h0:h1, w0:w1] = 1
        noise = torch.randint(0, 60, (3, height, width), generator=g)
        colour = torch.randint(150, 256, (3, 1, 1), generator=g)
        image = torch.where(label.bool(), colour + noise // 3, noise).clamp(0, 255).to(torch.uint8)
        batch.append({"image": image, "sem_seg": label, "height": height, "width": width})
    return batch


def foreground_iou(outputs: list[dict], batch: list[dict]) -> float:
    """IoU of class 1 over the whole batch, from the models' ``sem_seg`` logits."""
    inter = union = 0
    for out, item in zip(outputs, batch):
        pred = out["sem_seg"].argmax(0) == 1
        gt = item["sem_seg"] == 1
        inter += int((pred & gt).sum())
        union += int((pred | gt).sum())
    return inter / max(union, 1)


def count_parameters(model: torch.nn.Module) -> int:
    """All parameters (fvcore's ``parameter_count``; shared tensors counted once)."""
    return int(parameter_count(model)[""])
