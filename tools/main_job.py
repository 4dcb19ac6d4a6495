#!/usr/bin/env python
"""The main job (``make demo``): train, evaluate and look at a U-Net on Chair Segments.

1. Data: ``$DETECTRON2_DATASETS/ChairSegments/Chair064`` (default ``./datasets``) when it holds
   train and val splits (the official data, or any in its layout); otherwise a small procedural
   Chair064 is generated under ``<output-dir>/data``
   (``chairseg.data.prepare.find_or_generate_chair_segments``).
2. Train ``configs/ChairSegments/unet.yaml`` at a CPU-friendly width with Detectron2's
   ``DefaultTrainer`` (our ``Trainer``), Adam lr 1e-3 and batch 10 as the paper's reference code,
   evaluating on val a few times on the way.
3. Write ``<output-dir>/predictions.png`` (input | ground truth | prediction for val images,
   drawn with Detectron2's ``Visualizer``) and ``<output-dir>/curves.png`` (loss and metrics).
4. Print the table: the paper's Prec., IoU, Dice and mIoU of the trained U-Net and of the
   all-background prediction, on val.

Everything (logs, metrics.json, checkpoints, PNGs) goes under ``--output-dir``
(default ``output/main_job``). Trains in bf16 mixed precision, channels-last, from
images cached in memory (the fastest setting that keeps accuracy; see the study's "Speed").
"""

from __future__ import annotations

import argparse
import logging
import os
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
from semseg_heads.engine import Predictor, Trainer
from semseg_heads.evaluation import (
    all_background_scores,
    format_results_table,
)
from semseg_heads.utils.visualize import prediction_grid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN, VAL = "chair_segments_64_train", "chair_segments_64_val"
logger = logging.getLogger("semseg_heads.main_job")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output-dir", default="output/main_job", help="where everything is written")
    p.add_argument("--config-file", default=os.path.join(REPO, "configs/ChairSegments/unet.yaml"))
    p.add_argument("--iters", type=int, default=1200, help="training iterations (batch 10)")
    p.add_argument("--width-scale", type=float, default=0.25, help="MODEL.SEMSEG_HEADS.WIDTH_SCALE")
    p.add_argument(
        "--evals",
        type=int,
        help="evaluations on val during training, the last at the end (default: 4, or 1 when "
        "val has more than 1000 images)",
    )
    p.add_argument("--train-images", type=int, default=1000, help="generated train images (no real data)")
    p.add_argument("--val-images", type=int, default=200, help="generated val images (no real data)")
    p.add_argument("--grid-images", type=int, default=8, help="val images in predictions.png")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (1: on a 2-core CPU, 2 threads ran these small convs several "
        "times slower; the training images are loaded in-process from memory)",
    )
    p.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="more config KEY VALUE overrides")
    return p


def prepare_data(args: argparse.Namespace) -> str:
    """Register Chair064 train/val: the real data if present, else generate a small one."""
    _, description = find_or_generate_chair_segments(
        [builtin_root()],
        os.path.join(args.output_dir, "data", "ChairSegments"),
        {"train": args.train_images, "val": args.val_images},
        resolution=64,
    )
    return description


def build_cfg(args: argparse.Namespace):
    n_val = len(DatasetCatalog.get(VAL))
    evals = args.evals if args.evals is not None else (4 if n_val <= 1000 else 1)
    # EvalHook also evaluates after the last iteration, whatever the period.
    eval_period = max(1, args.iters // evals) if evals > 1 else 0
    opts = [
        "MODEL.DEVICE", args.device,
        "MODEL.SEMSEG_HEADS.WIDTH_SCALE", str(args.width_scale),
        "DATASETS.TRAIN", f"('{TRAIN}',)", "DATASETS.TEST", f"('{VAL}',)",
        # The paper's reference recipe for U-Net: Adam, lr 1e-3, batch 10; constant lr.
        "SOLVER.OPTIMIZER", "Adam", "SOLVER.BASE_LR", "0.001", "SOLVER.IMS_PER_BATCH", "10",
        "SOLVER.WEIGHT_DECAY", "0.0", "SOLVER.STEPS", "()", "SOLVER.WARMUP_ITERS", "0",
        "SOLVER.MAX_ITER", str(args.iters), "SOLVER.CHECKPOINT_PERIOD", str(args.iters),
        "SOLVER.LOG_PERIOD", "50", "TEST.EVAL_PERIOD", str(eval_period),
        "SEED", "0", "OUTPUT_DIR", args.output_dir,
        # The fastest setting that keeps accuracy (projects/ChairSegments/README.md, "Speed"):
        # mixed precision (bf16 on the CPU, fp16 on CUDA), channels-last, decoded images kept
        # in memory and loaded in-process (NUM_WORKERS -1: auto).
        "SOLVER.AMP.ENABLED", "True", "MODEL.CHANNELS_LAST", "True",
        "DATALOADER.CACHE_IMAGES", "True", "DATALOADER.NUM_WORKERS", "-1",
    ]  # fmt: skip
    cfg = get_semseg_heads_cfg(args.config_file, opts + list(args.opts))
    n_train = len(DatasetCatalog.get(TRAIN))
    logger.info(f"{n_train} train / {n_val} val images; evaluating every {eval_period} iterations")
    cfg.freeze()
    return cfg


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


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    args.output_dir = os.path.abspath(args.output_dir)
    os.makedirs(args.output_dir, exist_ok=True)
    setup_logging(args.output_dir)
    if args.device == "cpu" and args.threads > 0:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    data = prepare_data(args)
    cfg = build_cfg(args)
    metrics = os.path.join(args.output_dir, "metrics.json")
    if os.path.exists(metrics):
        os.remove(metrics)  # a fresh run: curves of this run only

    config = os.path.relpath(args.config_file, REPO)
    logger.info(f"Training {config} for {args.iters} iterations on {args.device}")
    t_train = time.perf_counter()
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    t_train = time.perf_counter() - t_train
    results = trainer.last_eval_results
    baseline = {"chair_segments": all_background_scores(VAL)}

    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.WEIGHTS = os.path.join(args.output_dir, "model_final.pth")
    grid_png = os.path.join(args.output_dir, "predictions.png")
    grid = prediction_grid(Predictor(cfg), VAL, args.grid_images, grid_png)
    curves = plot_metrics(metrics, os.path.join(args.output_dir, "curves.png"), title="U-Net on Chair064")

    n_val = len(DatasetCatalog.get(VAL))
    name = f"U-Net (width x{args.width_scale:g}, {args.iters} it)"
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
    print(f"Run folder: {args.output_dir} (log.txt, metrics.json, model_final.pth)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
