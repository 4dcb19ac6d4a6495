"""The study's outputs: results.md table and the qualitative grid."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from chair_study.plan import GRID_MAX, RESOLUTION


def _fmt(v, digits: int = 2) -> str:
    """A table cell: "-" when the model has no such metric, "nan" when it had nothing to score
    (e.g. COCO AP of a model that detected nothing)."""
    if v is None:
        return "-"
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    return f"{v:.{digits}f}"


def results_markdown(rows: list[dict], settings: dict, floor: dict | None) -> str:
    budget = settings["budget"]
    budget_s = (
        f"{budget['iters']} iterations" if "iters" in budget else f"{budget['minutes']} min of training"
    )
    width = settings["width_scale"] if settings["width_scale"] is not None else "config default"
    lines = [
        f"Device {settings['device']}, {settings['threads']} torch threads, batch {settings['batch']}, "
        f"width scale {width}, "
        f"budget {budget_s} per model, data {settings['data_root']}"
        + (f" (generated: {settings['generated_data']})" if settings["generated_data"] else ""),
        "load = the machine's 1-minute load average when the model finished; the study's own process "
        "accounts for about its torch threads, anything above that is other processes competing for "
        "the cores, which lowers every speed figure of that row.",
        "",
        "| model | params (M) | GMACs / 64x64 img | iters | train img/s | infer img/s | peak RSS (MiB) "
        "| load | Prec. | IoU | Dice | mIoU | box AP | mask AP |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r.get("failed"):
            lines.append(f"| {r['model']} | failed: see {r['log']} |" + " |" * 12)
            continue
        m = r["metrics"]
        mem = _fmt(r["peak_rss_mb"], 0) + (
            f" (GPU {_fmt(r['peak_gpu_mb'], 0)})" if r.get("peak_gpu_mb") else ""
        )
        lines.append(
            f"| {r['model']} | {r['params'] / 1e6:.3f} | {_fmt(r['gmacs_per_image'], 3)} | {r['iters']} "
            f"| {_fmt(r['train_images_per_s'], 1)} | {_fmt(r['infer_images_per_s'], 1)} | {mem} "
            f"| {_fmt(r.get('load_avg_1min_at_end'), 1)} | {_fmt(m.get('Prec'))} | {_fmt(m.get('IoU'))} "
            f"| {_fmt(m.get('Dice'))} | {_fmt(m.get('mIoU'))} "
            f"| {_fmt(m.get('box_AP'))} | {_fmt(m.get('mask_AP'))} |"
        )
    if floor:
        lines.append(
            f"| *all background* | | | | | | | | {_fmt(floor.get('Prec'))} | {_fmt(floor.get('IoU'))} "
            f"| {_fmt(floor.get('Dice'))} | {_fmt(floor.get('mIoU'))} | | |"
        )
    return "\n".join(lines) + "\n"


def qualitative_grid(rows: list[dict], out: Path, n_images: int, dataset_name: str, path: Path) -> None:
    """A row per val image: input, ground truth, then each model's chair map.

    Prediction cells: white = chair found, red = false chair, blue = missed chair.
    """
    from detectron2.data import DatasetCatalog
    from PIL import Image, ImageDraw

    from semseg_heads.evaluation import ground_truth_mask

    records = DatasetCatalog.get(dataset_name)[: min(n_images, GRID_MAX)]
    models = [r for r in rows if not r.get("failed")]
    preds = {}
    for r in models:
        z = np.load(out / r["model"] / "grid_predictions.npz")
        preds[r["model"]] = dict(zip(z["file_names"].tolist(), z["maps"]))
    cell, pad, header = 2 * RESOLUTION, 4, 18
    cols = ["input", "ground truth"] + [r["model"] for r in models]
    grid = Image.new(
        "RGB", (len(cols) * (cell + pad) + pad, header + len(records) * (cell + pad) + pad), "gray"
    )
    draw = ImageDraw.Draw(grid)
    for j, title in enumerate(cols):
        draw.text((pad + j * (cell + pad), 3), title[:22], fill="white")
    for i, rec in enumerate(records):
        y = header + i * (cell + pad)
        image = Image.open(rec["file_name"]).convert("RGB")
        gt, _ = ground_truth_mask(rec, dataset_name)
        cells = [image, _mask_image(gt, gt)]
        for r in models:
            pred = preds[r["model"]].get(rec["file_name"])
            missing = Image.new("RGB", gt.shape[::-1], "gray")  # model did not predict this image
            cells.append(_mask_image(pred.astype(bool), gt) if pred is not None else missing)
        for j, c in enumerate(cells):
            grid.paste(c.resize((cell, cell), Image.NEAREST), (pad + j * (cell + pad), y))
    grid.save(path)


def _mask_image(pred: np.ndarray, gt: np.ndarray):
    from PIL import Image

    rgb = np.zeros(pred.shape + (3,), dtype=np.uint8)
    rgb[pred & gt] = (255, 255, 255)
    rgb[pred & ~gt] = (230, 40, 40)
    rgb[~pred & gt] = (40, 90, 230)
    return Image.fromarray(rgb)
