#!/usr/bin/env python
"""The main job (``make demo``): train, evaluate and look at a U-Net on Chair Segments.

1. Data: ``$DETECTRON2_DATASETS/ChairSegments/Chair064`` (default ``./datasets``) when it holds
   train and val splits (the official data, or any in its layout); otherwise a small procedural
   Chair064 is generated under ``<output-dir>/data``
   (``chairseg.data.prepare.find_or_generate_chair_segments``).
2. Train and evaluate with ``tools/train_net.py --config-file configs/ChairSegments/demo/unet.yaml
   OUTPUT_DIR <output-dir>`` in a child process (the command is printed; run it yourself the
   same way). The config holds the recipe: U-Net at a quarter of the paper's widths, Adam lr 1e-3
   and batch 10 as the paper's reference code, 1200 iterations, val evaluated 4 times, bf16
   mixed precision, channels-last, images cached in memory (see the config's comments).
3. Write ``<output-dir>/predictions.png`` (input | ground truth | prediction for val images,
   drawn with Detectron2's ``Visualizer``) and ``<output-dir>/curves.png`` (loss and metrics).
4. Print the table: the paper's Prec., IoU, Dice and mIoU of the trained U-Net and of the
   all-background prediction, on val.

Everything (logs, config.yaml, metrics.json, checkpoints, PNGs) goes under ``--output-dir``
(default ``output/main_job``). ``--iters``, ``--evals``, ``--width-scale``, ``--device`` and
trailing ``KEY VALUE`` pairs, when given, are added to the training command as config overrides.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import math
import os
import re
import shlex
import subprocess
import sys
import time

import torch
from detectron2.data import DatasetCatalog
from detectron2.utils.logger import setup_logger

import semseg_heads  # noqa: F401  (registers models and datasets)
from chairseg.data.prepare import find_or_generate_chair_segments
from chairseg.metrics_plot import plot_metrics
from semseg_heads.config import get_semseg_heads_cfg
from semseg_heads.data.chair_segments import builtin_root
from semseg_heads.engine import Predictor
from semseg_heads.evaluation import all_background_scores, format_results_table
from semseg_heads.utils.visualize import prediction_grid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_CONFIG = "configs/ChairSegments/demo/unet.yaml"
TRAIN, VAL = "chair_segments_64_train", "chair_segments_64_val"
NAMES = {"UNet": "U-Net"}
logger = logging.getLogger("semseg_heads.main_job")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output-dir", default="output/main_job", help="where everything is written")
    p.add_argument(
        "--config-file", default=DEMO_CONFIG, help="the training recipe (relative to the repository)"
    )
    p.add_argument("--iters", type=int, help="SOLVER.MAX_ITER (default: the config's, 1200)")
    p.add_argument("--width-scale", type=float, help="MODEL.SEMSEG_HEADS.WIDTH_SCALE (default: the config's)")
    p.add_argument(
        "--evals",
        type=int,
        help="evaluations on val during training, the last at the end (sets TEST.EVAL_PERIOD; "
        "default: the config's, 4 with --iters)",
    )
    p.add_argument("--train-images", type=int, default=1000, help="generated train images (no real data)")
    p.add_argument("--val-images", type=int, default=200, help="generated val images (no real data)")
    p.add_argument("--grid-images", type=int, default=8, help="val images in predictions.png")
    p.add_argument("--device", help="MODEL.DEVICE (default: the config's, cpu)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (1: on a 2-core CPU, 2 threads ran these small convs several "
        "times slower; the training images are loaded in-process from memory)",
    )
    p.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="more config KEY VALUE overrides")
    return p


def prepare_data(args: argparse.Namespace) -> tuple[str, str]:
    """Register Chair064 train/val: the real data if present, else generate a small one.
    Returns (``$DETECTRON2_DATASETS`` for the training process, description)."""
    root, description = find_or_generate_chair_segments(
        [builtin_root()],
        os.path.join(args.output_dir, "data", "ChairSegments"),
        {"train": args.train_images, "val": args.val_images},
        resolution=64,
    )
    return os.path.dirname(root), description


def _in_repo(path: str) -> str:
    """``path`` as the training command (run in the repository) names it: relative to the
    repository when inside it; a path that does not exist here is taken as relative to it."""
    full = os.path.abspath(path) if os.path.exists(path) else os.path.join(REPO, path)
    return os.path.relpath(full, REPO) if full.startswith(REPO + os.sep) else full


def overrides(args: argparse.Namespace, config: str) -> list[str]:
    """Config overrides from the options that were given (none for ``make demo``)."""
    opts: list[str] = []
    if args.device:
        opts += ["MODEL.DEVICE", args.device]
    if args.width_scale is not None:
        opts += ["MODEL.SEMSEG_HEADS.WIDTH_SCALE", str(args.width_scale)]
    if args.iters is not None:
        opts += ["SOLVER.MAX_ITER", str(args.iters), "SOLVER.CHECKPOINT_PERIOD", str(args.iters)]
    if args.evals is not None or args.iters is not None:
        iters = args.iters or get_semseg_heads_cfg(os.path.join(REPO, config)).SOLVER.MAX_ITER
        evals = args.evals if args.evals is not None else 4
        # EvalHook also evaluates after the last iteration, whatever the period.
        opts += ["TEST.EVAL_PERIOD", str(max(1, iters // evals) if evals > 1 else 0)]
    return opts + list(args.opts)


def training_command(args: argparse.Namespace) -> list[str]:
    """``tools/train_net.py --config-file <config> OUTPUT_DIR <output-dir>``, plus the
    overrides of the options given (none for ``make demo``); run in the repository."""
    config = _in_repo(args.config_file)
    return [
        "tools/train_net.py",
        "--config-file",
        config,
        "OUTPUT_DIR",
        args.output_dir,
        *overrides(args, config),
    ]


class _ConsoleFilter(logging.Filter):
    """On the console: progress lines and warnings; the full log goes to <output>/log.txt."""

    SHOWN = ("semseg_heads", "detectron2.utils.events", "detectron2.engine.hooks")

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.name.startswith(self.SHOWN)


def setup_logging(output_dir: str) -> None:
    for name in ("detectron2", "fvcore", "semseg_heads"):
        lg = setup_logger(output=output_dir, name=name, abbrev_name="d2" if name == "detectron2" else name)
        for h in lg.handlers:
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                h.addFilter(_ConsoleFilter())


# A console line of Detectron2's logger: "[11/29 20:01:02 d2.engine.hooks]: ...", possibly
# with colour codes and a "WARNING"/"ERROR" prefix.
_RECORD = re.compile(r"^(?:(WARNING|ERROR) )?\[\d\d/\d\d \d\d:\d\d:\d\d ([\w.]+)\]: ")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_SHOWN = ("semseg_heads", "d2.utils.events", "d2.engine.hooks")


def run_training(command: list[str], env: dict[str, str], log: str) -> None:
    """Run the training command, showing its progress lines and warnings (the rest of its log,
    the config and the model, is in ``log``); on failure, its last lines and the log's path."""
    proc = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    tail: collections.deque[str] = collections.deque(maxlen=40)
    show = True  # lines before the first log record (the command line, Python warnings)
    assert proc.stdout is not None
    for line in proc.stdout:
        tail.append(line)
        record = _RECORD.match(_ANSI.sub("", line))
        if record:  # a new record; the lines after it without a header belong to it
            show = bool(record.group(1)) or record.group(2).startswith(_SHOWN)
        if show:
            sys.stdout.write(line)
            sys.stdout.flush()
    if proc.wait() != 0:
        sys.stderr.write("".join(tail))
        raise SystemExit(f"training failed (exit status {proc.returncode}); its full log is {log}")


def read_results(output_dir: str) -> dict:
    """The final evaluation's paper metrics, as ``PerImageIoUEvaluator`` wrote them."""
    path = os.path.join(output_dir, "inference", VAL, "chair_segments_per_image.json")
    with open(path) as f:
        summary = json.load(f)["summary"]
    return {"chair_segments": {k: math.nan if v is None else v for k, v in summary.items()}}


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    args.output_dir = os.path.abspath(args.output_dir)
    os.makedirs(args.output_dir, exist_ok=True)
    setup_logging(args.output_dir)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    datasets, data = prepare_data(args)
    n_train, n_val = len(DatasetCatalog.get(TRAIN)), len(DatasetCatalog.get(VAL))
    # A fresh run: curves and results of this run only.
    for stale in ("metrics.json", os.path.join("inference", VAL, "chair_segments_per_image.json")):
        if os.path.exists(os.path.join(args.output_dir, stale)):
            os.remove(os.path.join(args.output_dir, stale))

    command = training_command(args)
    threads = {"OMP_NUM_THREADS": str(args.threads)} if args.threads > 0 else {}
    env = {**os.environ, "DETECTRON2_DATASETS": datasets, **threads, "PYTHONUNBUFFERED": "1"}
    shown = " ".join(f"{k}={shlex.quote(v)}" for k, v in {"DETECTRON2_DATASETS": datasets, **threads}.items())
    logger.info(f"{n_train} train / {n_val} val images; training: {shown} python {shlex.join(command)}")
    t_train = time.perf_counter()
    run_training([sys.executable, *command], env, os.path.join(args.output_dir, "log.txt"))
    t_train = time.perf_counter() - t_train

    # The run's own config (train_net's default_setup wrote it) for the drawing and the name.
    cfg = get_semseg_heads_cfg(os.path.join(args.output_dir, "config.yaml"))
    cfg.MODEL.WEIGHTS = os.path.join(args.output_dir, "model_final.pth")
    results = read_results(args.output_dir)
    baseline = {"chair_segments": all_background_scores(VAL)}
    grid_png = os.path.join(args.output_dir, "predictions.png")
    grid = prediction_grid(Predictor(cfg), VAL, args.grid_images, grid_png)
    model = NAMES.get(cfg.MODEL.META_ARCHITECTURE, cfg.MODEL.META_ARCHITECTURE)
    curves = plot_metrics(
        os.path.join(args.output_dir, "metrics.json"),
        os.path.join(args.output_dir, "curves.png"),
        title=f"{model} on Chair064",
    )

    name = f"{model} (width x{cfg.MODEL.SEMSEG_HEADS.WIDTH_SCALE:g}, {cfg.SOLVER.MAX_ITER} it)"
    table = format_results_table({name: results, "all background": baseline})
    print()
    print(f"Chair064 val ({n_val} images), data: {data}")
    print(table)
    print(
        f"IoU {results['chair_segments']['IoU']:.2f} vs {baseline['chair_segments']['IoU']:.2f} "
        "for predicting background everywhere."
    )
    print(f"Training {t_train / 60:.1f} min, whole job {(time.perf_counter() - t0) / 60:.1f} min.")
    print(f"Wrote {grid}")
    print(f"Wrote {curves}")
    print(f"Run folder: {args.output_dir} (log.txt, config.yaml, metrics.json, model_final.pth)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
