#!/usr/bin/env python
"""Curves and table of CPU recipe runs (issue 18) from their output folders.

Each run folder is what ``tools/train_net.py`` writes: ``metrics.json`` (Detectron2's
``JSONWriter``: the step time of every logged window and the evaluations made during training)
and ``config.yaml``. For every evaluation the report gives the training minutes spent before it:
the logged step times (``time``, the median of each ``SOLVER.LOG_PERIOD`` window) times the
iterations of their window, so evaluation and checkpoint time is not counted.

    python projects/ChairSegments/recipe_report.py /work/runs/fcn8s=FCN-8s /work/runs/unet=U-Net \\
        --json results/recipes.json --figure results/recipes_iou_vs_minutes.png

Prints a Markdown table (model, width, input size, iterations, training minutes, IoU at the end,
its best, the IoU gained over the last third of the training minutes; box / mask AP for
instance models) and with ``--figure`` draws IoU against training minutes, one curve a run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

import yaml

from chairseg.metrics_plot import load_metrics

#: Evaluation keys read from metrics.json, by the name used in the report.
EVAL_KEYS = {
    "IoU": "chair_segments/IoU",
    "Dice": "chair_segments/Dice",
    "Prec": "chair_segments/Prec",
    "mIoU": "chair_segments/mIoU",
    "box_AP": "bbox/AP",
    "mask_AP": "segm/AP",
}


def training_curve(rows: list[dict]) -> list[dict]:
    """The evaluations of one run's metrics.json rows, each with the iterations done and the
    training minutes spent before it.

    Each timed row (iteration ``i``, ``time`` t) stands for the iterations since the previous
    timed row at t seconds each; an evaluation inside a window gets its share of that window.
    The final evaluation is written after training, at iteration MAX_ITER without a step time.
    A resumed run writes some iterations twice; the later row wins, as in
    ``chairseg.metrics_plot.series``."""
    by_iter: dict[int, dict] = {}
    for row in rows:
        by_iter.setdefault(int(row["iteration"]), {}).update(row)
    timed = [(it, float(r["time"])) for it, r in sorted(by_iter.items()) if _number(r.get("time"))]
    last_timed = timed[-1][0] if timed else -1

    def seconds_after(done: int) -> float:
        """Training seconds of the first ``done`` iterations."""
        total, prev = 0.0, -1
        for it, t in timed:
            total += t * (min(it, done - 1) - prev)
            if it >= done - 1:
                break
            prev = it
        return total

    out = []
    for it, row in sorted(by_iter.items()):
        found = {name: float(row[key]) for name, key in EVAL_KEYS.items() if _number(row.get(key))}
        if found:
            done = it if it > last_timed else it + 1
            out.append({"iteration": done, "training_minutes": round(seconds_after(done) / 60.0, 2), **found})
    return out


def _number(v: object) -> bool:
    return isinstance(v, (int, float)) and v == v  # NaN is not a result


def last_third_gain(curve: list[dict], key: str = "IoU") -> float | None:
    """``key`` at the last evaluation minus its value at the last evaluation made before the
    final third of the training minutes (None with fewer than two evaluations)."""
    points = [(e["training_minutes"], e[key]) for e in curve if key in e]
    if len(points) < 2:
        return None
    end = points[-1][0]
    before = [v for m, v in points[:-1] if m <= end * 2.0 / 3.0] or [points[0][1]]
    return points[-1][1] - before[-1]


def describe_run(folder: str, label: str | None = None) -> dict:
    """Settings (from config.yaml) and curve (from metrics.json) of one run folder."""
    metrics = os.path.join(folder, "metrics.json")
    if not os.path.isfile(metrics):
        raise FileNotFoundError(
            f"'{folder}' has no metrics.json (expected a tools/train_net.py output folder)"
        )
    cfg: dict = {}
    config = os.path.join(folder, "config.yaml")
    if os.path.isfile(config):
        with open(config) as f:
            cfg = yaml.safe_load(f) or {}
    model, inp, solver = cfg.get("MODEL", {}), cfg.get("INPUT", {}), cfg.get("SOLVER", {})
    curve = training_curve(load_metrics(metrics))
    # WIDTH_SCALE is a semseg_heads key: Detectron2's own models ignore it.
    detectron2_model = model.get("META_ARCHITECTURE") in ("GeneralizedRCNN", "SemanticSegmentor")
    return {
        "label": label or os.path.basename(os.path.normpath(folder)),
        "folder": folder,
        "meta_architecture": model.get("META_ARCHITECTURE"),
        "width_scale": None if detectron2_model else model.get("SEMSEG_HEADS", {}).get("WIDTH_SCALE"),
        "input_size": inp.get("MIN_SIZE_TEST"),
        "max_iter": solver.get("MAX_ITER"),
        "weights": model.get("WEIGHTS") or "",
        "evaluations": curve,
        "iou_gain_last_third": last_third_gain(curve),
    }


def _fmt(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def markdown_table(runs: list[dict]) -> str:
    head = (
        "| run | width | input px | iterations (of) | training min | IoU at end | best IoU | "
        "IoU gain, last third | box AP | mask AP |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )
    lines = [head]
    for r in runs:
        ev = r["evaluations"]
        last = ev[-1] if ev else {}
        best = max((e["IoU"] for e in ev if "IoU" in e), default=None)
        lines.append(
            f"| {r['label']} | {r['width_scale'] if r['width_scale'] is not None else '-'} | "
            f"{r['input_size'] or '-'} | {last.get('iteration', '-')} ({r['max_iter'] or '-'}) | "
            f"{_fmt(last.get('training_minutes'), 1)} | {_fmt(last.get('IoU'))} | {_fmt(best)} | "
            f"{_fmt(r['iou_gain_last_third'])} | {_fmt(last.get('box_AP'), 1)} | "
            f"{_fmt(last.get('mask_AP'), 1)} |"
        )
    return "\n".join(lines)


def plot_iou_vs_minutes(runs: list[dict], output_png: str, title: str | None = None) -> str:
    """IoU on the evaluation set against training minutes, one curve a run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for r in runs:
        points = [(e["training_minutes"], e["IoU"]) for e in r["evaluations"] if "IoU" in e]
        if points:
            ax.plot(*zip(*points), marker="o", label=r["label"])
    ax.set_xlabel("training minutes (evaluations excluded)")
    ax.set_ylabel("IoU (paper's per-image, %)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(output_png, dpi=120)
    plt.close(fig)
    return output_png


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="run folders, each optionally FOLDER=LABEL")
    p.add_argument("--json", default=None, help="write the runs' settings and curves to this file")
    p.add_argument("--figure", default=None, help="draw IoU against training minutes to this PNG")
    p.add_argument("--title", default=None)
    args = p.parse_args(argv)
    runs = []
    for spec in args.runs:
        folder, _, label = spec.partition("=")
        try:
            runs.append(describe_run(folder, label or None))
        except (FileNotFoundError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    print(markdown_table(runs))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(runs, f, indent=1)
    if args.figure:
        print(plot_iou_vs_minutes(runs, args.figure, args.title))
    return 0


if __name__ == "__main__":
    sys.exit(main())
