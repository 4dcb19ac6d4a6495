"""Training curves from a run's ``metrics.json`` (Detectron2's ``JSONWriter``) to a PNG.

Left: the losses over iterations; right: the evaluation metrics written during training
(``sem_seg/mIoU``, the paper's ``chair_segments/{Prec,IoU,Dice}``, COCO ``segm/AP``, ...).
``tools/plot_metrics.py`` is the command line; ``tools/main_job.py`` calls ``plot_metrics``.
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict

import numpy as np

#: Evaluation metrics plotted by default (the suffix after "<task>/").
EVAL_METRICS = ("Prec", "IoU", "Dice", "mIoU", "pACC", "AP", "AP50")


def load_metrics(path: str) -> list[dict]:
    """The JSON lines of ``metrics.json``; a bad line is an error naming the file and line."""
    rows = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}, line {n}: not a JSON object ({e})") from None
            if not isinstance(row, dict) or "iteration" not in row:
                raise ValueError(f"{path}, line {n}: expected an object with an 'iteration' key")
            rows.append(row)
    return rows


def series(rows: list[dict]) -> dict[str, tuple[list[int], list[float]]]:
    """{key: (iterations, values)} sorted by iteration; when a resumed run wrote an iteration
    twice, the later line wins."""
    by_key: dict[str, dict[int, float]] = defaultdict(dict)
    for row in rows:
        it = int(row["iteration"])
        for k, v in row.items():
            if k != "iteration" and isinstance(v, (int, float)) and not math.isnan(v):
                by_key[k][it] = float(v)
    return {k: (sorted(d), [d[i] for i in sorted(d)]) for k, d in by_key.items()}


def _merge_identical(data: dict, keys: list[str]) -> list[list[str]]:
    """Group series with the same values (e.g. sem_seg/mIoU and chair_segments/mIoU on a
    two-class dataset) so each curve is drawn once, labelled with all its names."""
    groups: list[list[str]] = []
    for k in keys:
        for g in groups:
            if data[g[0]][0] == data[k][0] and np.allclose(data[g[0]][1], data[k][1]):
                g.append(k)
                break
        else:
            groups.append([k])
    return groups


def plot_metrics(metrics_json: str, output_png: str, title: str | None = None) -> str:
    """Write the curves of ``metrics_json`` to ``output_png``; returns ``output_png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = series(load_metrics(metrics_json))
    losses = sorted(k for k in data if k == "total_loss" or k.startswith("loss"))
    metrics = sorted(k for k in data if "/" in k and k.split("/", 1)[1] in EVAL_METRICS)
    if not losses and not metrics:
        raise ValueError(f"{metrics_json} has no losses or evaluation metrics to plot")

    fig, (ax_loss, ax_eval) = plt.subplots(1, 2, figsize=(12, 4.5))
    for k in losses:
        its, vals = data[k]
        ax_loss.plot(its, vals, label=k, linewidth=2.0 if k == "total_loss" else 1.0)
    ax_loss.set(xlabel="iteration", ylabel="loss (median over the logging window)", title="training loss")
    if losses:
        ax_loss.legend(fontsize=8)
    for keys in _merge_identical(data, metrics):
        its, vals = data[keys[0]]
        ax_eval.plot(its, vals, marker="o", label=" = ".join(keys))
    ax_eval.set(xlabel="iteration", ylabel="%", title="evaluation")
    if metrics:
        ax_eval.legend(fontsize=8)
    else:
        ax_eval.text(0.5, 0.5, "no evaluation during training", ha="center", transform=ax_eval.transAxes)
    for ax in (ax_loss, ax_eval):
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(output_png)), exist_ok=True)
    fig.savefig(output_png, dpi=100)
    plt.close(fig)
    return output_png
