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
A run whose folder is gone can be given as the JSON of one run (``describe_run``'s dict);
``--from-report`` starts from the runs of an earlier ``--json``, the runs given replacing its
runs of the same labels (a study updated with new runs of some models).

With ``--study`` runs of one label are seeds of one model: a row a model with the mean and
standard deviation over its runs, the IoU within ``--budget-minutes``, the paper's IoU and both
rankings (``run_recipes.py`` makes such runs). Training minutes depend on the machine; with
``--budget-iterations N`` the budget is the first N iterations instead (the iterations that the
budget's minutes gave on the machine a recipe was sized on), so it reads the same on any machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

import yaml

from chairseg.metrics_plot import load_metrics
from semseg_heads.utils.io import refuse_existing, write_json_atomic

#: Evaluation keys read from metrics.json, by the name used in the report.
EVAL_KEYS = {
    "IoU": "chair_segments/IoU",
    "Dice": "chair_segments/Dice",
    "Prec": "chair_segments/Prec",
    "mIoU": "chair_segments/mIoU",
    # TEST.AUG's final evaluation (the Trainer writes it beside the final plain one).
    "IoU_TTA": "chair_segments_TTA/IoU",
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


_RUN_KEYS = {"label", "evaluations", "width_scale", "input_size", "max_iter"}


def _checked_run(run: object, source: str) -> dict:
    missing = _RUN_KEYS - set(run) if isinstance(run, dict) else _RUN_KEYS
    if missing:
        missing_keys = ", ".join(sorted(missing))
        raise ValueError(f"'{source}' is not one run of recipe_report (missing: {missing_keys})")
    run.setdefault("folder", source)
    run.setdefault("iou_gain_last_third", last_third_gain(run["evaluations"]))
    return run


def load_run_json(path: str, label: str | None = None) -> dict:
    """One run as ``describe_run`` gives it, saved as JSON (a run whose folder is gone)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"'{path}' does not exist (expected a run saved as JSON)")
    with open(path) as f:
        run = _checked_run(json.load(f), path)
    return {**run, "label": label or run["label"]}


def load_report_runs(path: str) -> list[dict]:
    """The runs of an earlier report's ``--json`` (a list of runs, or ``--study``'s
    ``{"models": ..., "runs": ...}``)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"'{path}' does not exist (expected a recipe_report --json file)")
    with open(path) as f:
        data = json.load(f)
    runs = data.get("runs") if isinstance(data, dict) else data
    if not isinstance(runs, list):
        raise ValueError(f"'{path}' is not a recipe_report --json file (no list of runs)")
    return [_checked_run(r, f"{path}, run {i}") for i, r in enumerate(runs)]


def replace_runs(earlier: list[dict], new: list[dict]) -> list[dict]:
    """``earlier`` with every run of a label that ``new`` has replaced by ``new``'s runs of it
    (where that label's first run stood); ``new``'s other labels after them."""
    new_labels = {r["label"] for r in new}
    out: list[dict] = []
    placed: set[str] = set()
    for r in earlier:
        if r["label"] not in new_labels:
            out.append(r)
        elif r["label"] not in placed:
            out.extend(n for n in new if n["label"] == r["label"])
            placed.add(r["label"])
    return out + [n for n in new if n["label"] not in placed]


def _fmt(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def markdown_table(runs: list[dict]) -> str:
    head = (
        "| run | width | input px | iterations (of) | training min | IoU at end | IoU with TTA | "
        "best IoU | IoU gain, last third | box AP | mask AP |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )
    lines = [head]
    for r in runs:
        ev = r["evaluations"]
        last = ev[-1] if ev else {}
        best = max((e["IoU"] for e in ev if "IoU" in e), default=None)
        lines.append(
            f"| {r['label']} | {r['width_scale'] if r['width_scale'] is not None else '-'} | "
            f"{r['input_size'] or '-'} | {last.get('iteration', '-')} ({r['max_iter'] or '-'}) | "
            f"{_fmt(last.get('training_minutes'), 1)} | {_fmt(last.get('IoU'))} | "
            f"{_fmt(last.get('IoU_TTA'))} | {_fmt(best)} | "
            f"{_fmt(r['iou_gain_last_third'])} | {_fmt(last.get('box_AP'), 1)} | "
            f"{_fmt(last.get('mask_AP'), 1)} |"
        )
    return "\n".join(lines)


#: IoU on the real Chair Segments test set, paper widths, GPU (Pinto-Alva et al.,
#: arXiv:2012.01250, Table 2), by the label the study gives our model; FCN-8s is the paper's
#: FCN-VGG16.
PAPER_IOU = {"U-Net": 85.08, "FCN-8s": 61.09, "FCN-ResNet50": 60.19, "FCN-ResNet101": 61.62}


def _mean_sd(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
    return mean, var**0.5


def study_rows(runs: list[dict], budget_minutes: float, budget_iterations: int | None = None) -> list[dict]:
    """Runs grouped by label (one per seed): IoU and AP at the end, mean and sample standard
    deviation over the runs, IoU at the last evaluation within ``budget_minutes`` (or, given
    ``budget_iterations``, at or before that many iterations), and the rank of each model with a
    paper figure among those models, ours beside the paper's."""

    def in_budget(e: dict) -> bool:
        if budget_iterations is not None:
            return e["iteration"] <= budget_iterations
        return e["training_minutes"] <= budget_minutes

    budget = budget_name(budget_minutes, budget_iterations)
    groups: dict[str, list[dict]] = {}
    for r in runs:
        groups.setdefault(r["label"], []).append(r)
    rows = []
    for label, rs in groups.items():
        ends = [r["evaluations"][-1] for r in rs if r["evaluations"]]
        within = [[e for e in r["evaluations"] if "IoU" in e and in_budget(e)] for r in rs]
        row = {"label": label, "runs": len(rs), "folders": [r["folder"] for r in rs],
               "width_scale": rs[0]["width_scale"], "input_size": rs[0]["input_size"],
               "max_iter": rs[0]["max_iter"], "paper_IoU": PAPER_IOU.get(label)}  # fmt: skip
        row["training_minutes"], _ = _mean_sd([e["training_minutes"] for e in ends])
        for key in ("IoU", "IoU_TTA", "box_AP", "mask_AP"):
            values = [e[key] for e in ends if key in e]
            row[key], row[f"{key}_sd"] = _mean_sd(values)
            row[f"{key}_runs"] = len(values)
        values = [w[-1]["IoU"] for w in within if w]
        row["IoU_within_budget"], row["IoU_within_budget_sd"] = _mean_sd(values)
        row["IoU_within_budget_runs"] = len(values)
        row["budget"] = budget
        rows.append(row)
    ranked = [r for r in rows if r["paper_IoU"] is not None and r["IoU"] is not None]
    for key, rank in (("IoU", "rank"), ("paper_IoU", "paper_rank")):
        for i, r in enumerate(sorted(ranked, key=lambda r: -r[key]), 1):
            r[rank] = i
    return rows


def budget_name(budget_minutes: float, budget_iterations: int | None = None) -> str:
    """The budget as the study table's column names it."""
    return f"{budget_iterations:,} it" if budget_iterations is not None else f"{budget_minutes:g} min"


def study_table(rows: list[dict], budget_minutes: float, budget_iterations: int | None = None) -> str:
    def pm(r: dict, key: str, digits: int = 2) -> str:
        if r.get(key) is None:
            return "-"
        n = r.get(f"{key}_runs", r["runs"])  # reports written before the count: every run
        text = _fmt(r[key], digits) + (f" ± {_fmt(r[f'{key}_sd'], digits)}" if n > 1 else "")
        return text + (f" ({n} of {r['runs']} runs)" if n < r["runs"] else "")

    budget = budget_name(budget_minutes, budget_iterations)
    lines = [
        f"| model | runs | width | input px | iterations | training min | IoU at end | IoU with TTA | "
        f"IoU within {budget} | box AP | mask AP | paper IoU | rank (paper's) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        rank = f"{r['rank']} ({r['paper_rank']})" if "rank" in r else "-"
        lines.append(
            f"| {r['label']} | {r['runs']} | {r['width_scale'] if r['width_scale'] is not None else '-'} | "
            f"{r['input_size'] or '-'} | {r['max_iter'] or '-'} | {_fmt(r['training_minutes'], 1)} | "
            f"{pm(r, 'IoU')} | {pm(r, 'IoU_TTA')} | {pm(r, 'IoU_within_budget')} | {pm(r, 'box_AP', 1)} | "
            f"{pm(r, 'mask_AP', 1)} | {_fmt(r['paper_IoU'])} | {rank} |"
        )
    return "\n".join(lines)


def label_colors(labels: list[str]) -> dict[str, tuple]:
    """A colour a label, in order of first appearance: tab10 (matplotlib's default cycle) up to
    10 labels, tab20 up to 20; the default cycle would give the 11th label the 1st one's."""
    from matplotlib import colormaps

    unique = list(dict.fromkeys(labels))
    palette = colormaps["tab10" if len(unique) <= 10 else "tab20"]
    return {label: palette(i % palette.N) for i, label in enumerate(unique)}


def plot_iou_vs_minutes(runs: list[dict], output_png: str, title: str | None = None) -> str:
    """IoU on the evaluation set against training minutes, one curve a run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    colors = label_colors([r["label"] for r in runs])
    drawn: set[str] = set()  # runs of one label (seeds) share a colour and a legend entry
    for r in runs:
        points = [(e["training_minutes"], e["IoU"]) for e in r["evaluations"] if "IoU" in e]
        if points:
            first = r["label"] not in drawn
            drawn.add(r["label"])
            ax.plot(*zip(*points), marker="o", color=colors[r["label"]], label=r["label"] if first else None)
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
    p.add_argument("runs", nargs="*", help="run folders, each optionally FOLDER=LABEL")
    p.add_argument(
        "--from-report",
        default=None,
        help="start from the runs of an earlier --json; the runs given replace its runs of their labels",
    )
    p.add_argument("--json", default=None, help="write the runs' settings and curves to this file")
    p.add_argument("--figure", default=None, help="draw IoU against training minutes to this PNG")
    p.add_argument("--title", default=None)
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json or --figure file")
    p.add_argument(
        "--study",
        action="store_true",
        help="a row a label (runs of one label are seeds): mean ± sd, the paper's IoU, ranks",
    )
    p.add_argument(
        "--budget-minutes",
        type=float,
        default=30.0,
        help="with --study: the IoU within this many training minutes",
    )
    p.add_argument(
        "--budget-iterations",
        type=int,
        default=None,
        help="with --study: the IoU within this many iterations instead of --budget-minutes "
        "(the same budget on any machine)",
    )
    args = p.parse_args(argv)
    if args.budget_iterations is not None and args.budget_iterations <= 0:
        p.error(f"--budget-iterations must be a positive number of iterations, got {args.budget_iterations}")
    if not args.runs and not args.from_report:
        p.error("give run folders (FOLDER[=LABEL]) or --from-report")
    for option, path in (("--json", args.json), ("--figure", args.figure)):
        try:
            if path:
                refuse_existing(path, args.overwrite)
        except FileExistsError as e:
            print(f"error: {option} {e}", file=sys.stderr)
            return 2
    runs = []
    for spec in args.runs:
        source, _, label = spec.partition("=")
        try:
            if source.endswith(".json"):
                runs.append(load_run_json(source, label or None))
            else:
                runs.append(describe_run(source, label or None))
        except (FileNotFoundError, ValueError, KeyError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    if args.from_report:
        try:
            runs = replace_runs(load_report_runs(args.from_report), runs)
        except (FileNotFoundError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    output: object = runs
    if args.study:
        rows = study_rows(runs, args.budget_minutes, args.budget_iterations)
        print(study_table(rows, args.budget_minutes, args.budget_iterations))
        output = {"models": rows, "runs": runs}
    else:
        print(markdown_table(runs))
    if args.json:
        write_json_atomic(output, args.json, indent=1)
    if args.figure:
        print(plot_iou_vs_minutes(runs, args.figure, args.title))
    return 0


if __name__ == "__main__":
    sys.exit(main())
