"""The study's outputs: results.md table and the qualitative grid."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from chairseg.study.plan import GRID_MAX, RESOLUTION


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
    return "\n".join(lines + seed_spread(rows)) + "\n"


def _by_model(rows: list[dict]) -> dict[str, list[dict]]:
    """Finished runs grouped by config stem (the seeds of one model together)."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        if not r.get("failed"):
            groups.setdefault(Path(r["config"]).stem, []).append(r)
    return groups


def seed_spread(rows: list[dict]) -> list[str]:
    """Markdown lines: mean, sample standard deviation and range over the seeds of each model
    trained with more than one."""
    lines = [
        "",
        "Over seeds (mean ± sample standard deviation, [min, max]):",
        "",
        "| model | seeds | Prec. | IoU | Dice | mIoU |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for stem, runs in _by_model(rows).items():
        if len(runs) < 2:
            continue
        cells = []
        for key in ("Prec", "IoU", "Dice", "mIoU"):
            v = np.array([r["metrics"][key] for r in runs], dtype=float)
            cells.append(f"{v.mean():.2f} ± {v.std(ddof=1):.2f} [{v.min():.2f}, {v.max():.2f}]")
        seeds = ", ".join(str(r.get("seed")) for r in runs)
        lines.append(f"| {stem} | {seeds} | " + " | ".join(cells) + " |")
    return lines if len(lines) > 5 else []


def curve_figure(rows: list[dict], settings: dict, floor: dict | None, path: Path) -> None:
    """Val IoU against training minutes (evaluations excluded), a line per run; the seeds of a
    model share its colour and label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    colours = plt.get_cmap("tab20").colors
    for i, (stem, runs) in enumerate(_by_model(rows).items()):
        for j, r in enumerate(runs):
            curve = r.get("val_curve") or []
            x = [p["train_seconds"] / 60 for p in curve]
            y = [p["metrics"].get("IoU") for p in curve]
            label = stem + (f" ({len(runs)} seeds)" if len(runs) > 1 else "") if j == 0 else None
            ax.plot(x, y, marker="o", ms=3, lw=1.5 if j == 0 else 0.8, color=colours[i % 20], label=label)
    if floor:
        ax.axhline(floor.get("IoU", 0.0), color="gray", ls="--", lw=1, label="all background")
    budget = settings["budget"]
    ax.set_xlabel("training minutes (evaluations excluded)")
    ax.set_ylabel("val IoU of the chair (%, per image)")
    ax.set_title(
        f"Chair064 val, width scale {settings['width_scale']}, batch {settings['batch']}, "
        + (f"{budget['minutes']} min per model" if "minutes" in budget else f"{budget['iters']} iterations")
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def qualitative_grid(rows: list[dict], out: Path, n_images: int, dataset_name: str, path: Path) -> None:
    """A row per val image: input, ground truth, then each model's chair map, drawn by
    ``semseg_heads.utils.visualize`` (white = chair found, red = false chair, blue = missed
    chair; grey = the model has no prediction for that image)."""
    from detectron2.data import DatasetCatalog
    from PIL import Image

    from semseg_heads.evaluation import ground_truth_mask
    from semseg_heads.utils.visualize import binary_errors, panel_grid

    records = DatasetCatalog.get(dataset_name)[: min(n_images, GRID_MAX)]
    models = [r for r in rows if not r.get("failed")]
    preds = {}
    for r in models:
        z = np.load(out / r["model"] / "grid_predictions.npz")
        preds[r["model"]] = dict(zip(z["file_names"].tolist(), z["maps"]))
    titles = ["input", "ground truth"] + [r["model"] for r in models]
    panels = []
    for i, rec in enumerate(records):
        gt, _ = ground_truth_mask(rec, dataset_name)
        cells = [np.asarray(Image.open(rec["file_name"]).convert("RGB")), binary_errors(gt, gt)]
        for r in models:
            pred = preds[r["model"]].get(rec["file_name"])
            cells.append(None if pred is None else binary_errors(pred.astype(bool), gt))
        panels.append([(c, titles[j] if i == 0 else "") for j, c in enumerate(cells)])
    panel_grid(panels, cell=2 * RESOLUTION).save(path)
