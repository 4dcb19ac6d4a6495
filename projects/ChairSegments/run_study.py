#!/usr/bin/env python
"""The Chair Segments study: every model config plus Mask R-CNN, one budget, one table.

For each config, in its own process (so peak memory is per model): build it with the same
overrides (device, batch, width scale, budget), train it with ``semseg_heads.engine.Trainer``,
evaluate it on val with the Trainer's evaluators (``SemSegEvaluator`` + the paper's metrics;
``COCOEvaluator`` for Mask R-CNN) at ``--eval-points`` shares of the budget and at the end,
and measure parameters, GMACs per 64x64 image (fvcore), training and inference images/s and
peak memory. The parent then writes ``results.json``, ``results.md`` (with the spread over
seeds), ``qualitative.png`` (a row per val image; input, ground truth, then a column per
model) and ``val_iou_curve.png`` (val IoU against training minutes, a line per run).

It resumes: a model whose ``study_result.json`` exists is not retrained, and a model killed
mid-training continues from its last checkpoint. Settings are stored in
``study_settings.json``; rerunning with different settings into the same folder is refused.

CPU, every scratch/ config and the CPU Mask R-CNN, U-Net and FCN-8s with 3 seeds (88.6
minutes here on 2 cores; README "C."):

    python projects/ChairSegments/run_study.py --width-scale 0.25 --minutes 5.5

GPU at paper widths (same script, no changes):

    python projects/ChairSegments/run_study.py --width-scale 1 --iters 20000 \
        --data-root $DETECTRON2_DATASETS/ChairSegments --output-dir output/chair_study_gpu
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from chairseg.study.plan import (
    GRID_MAX,
    MODEL_CONFIGS,
    RESOLUTION,
    SEEDED_MODELS,
    SEEDS,
    check_settings,
    config_path,
    prepare_data,
    register_data,
    study_settings,
)
from chairseg.study.report import curve_figure, qualitative_grid, results_markdown
from chairseg.study.worker import run_models, run_worker


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument(
        "--configs",
        nargs="+",
        default=MODEL_CONFIGS,
        help="config names under configs/ChairSegments/ or paths to .yaml files (default: the "
        "study/ configs: the 10 semantic scratch/ recipes and the CPU Mask R-CNN "
        "scratch/mask_rcnn_R_18_FPN, with the study's settings of study/Base-Study.yaml)",
    )
    p.add_argument("--output-dir", default="output/chair_study")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--iters", type=int, default=None, help="budget: SOLVER.MAX_ITER for every model")
    budget.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="budget: wall-clock training minutes per model (iterations calibrated per model "
        "from a short timed run on this machine)",
    )
    p.add_argument("--batch", type=int, default=16, help="SOLVER.IMS_PER_BATCH for every model")
    p.add_argument(
        "--width-scale",
        type=float,
        default=None,
        help="MODEL.SEMSEG_HEADS.WIDTH_SCALE (default: the configs' own, i.e. paper widths)",
    )
    p.add_argument("--num-workers", type=int, default=None, help="DATALOADER.NUM_WORKERS (default: config's)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads per model process")
    p.add_argument("--device", default=None, help="MODEL.DEVICE (default: cuda if available, else cpu)")
    p.add_argument(
        "--data-root",
        default=None,
        help="folder holding Chair064/{train,val} (e.g. the real release under "
        "$DETECTRON2_DATASETS/ChairSegments); default: generate one under OUTPUT_DIR/data",
    )
    p.add_argument("--train-images", type=int, default=2000, help="generated training images")
    p.add_argument("--val-images", type=int, default=200, help="generated val images")
    p.add_argument(
        "--grid-images", type=int, default=8, help=f"val images (rows) in qualitative.png, at most {GRID_MAX}"
    )
    p.add_argument(
        "--seeds", type=int, nargs="+", default=SEEDS, help="SEED of each run of the --seeded-models"
    )
    p.add_argument(
        "--seeded-models",
        nargs="*",
        default=SEEDED_MODELS,
        help="models (config stems) trained once per --seeds; the others with the first seed only",
    )
    p.add_argument(
        "--eval-points",
        type=int,
        default=8,
        help="val evaluations per model, at equal shares of the budget (the last one after training); "
        "they make the curve of val IoU against training minutes (their time is not counted)",
    )
    p.add_argument(
        "--plan-factor",
        type=float,
        default=1.0,
        help="with --minutes: SOLVER.MAX_ITER = factor x the iterations calibrated to fit the budget "
        "(the LR schedule's length); above 1 when other processes load the machine",
    )
    p.add_argument("--force", action="store_true", help="accept changed settings for an existing output dir")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker-seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="config overrides for every model")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s %(name)s] %(message)s", datefmt="%H:%M:%S")
    out = Path(args.output_dir).resolve()
    if args.worker:
        run_worker(args.worker, out, args.worker_seed)
        return 0

    settings = study_settings(args)
    check_settings(out, settings, args.force)
    for c in args.configs:
        if not config_path(c).is_file():
            raise SystemExit(f"--configs: {config_path(c)} does not exist")
    prepare_data(settings)
    t0 = time.perf_counter()
    rows = run_models(args.configs, out, settings)

    register_data(settings)
    from semseg_heads.evaluation import all_background_scores

    val = f"chair_segments_{RESOLUTION}_val"
    floor = all_background_scores(val)
    summary = {
        "settings": settings,
        "command": " ".join([Path(sys.executable).name, *sys.argv]) if argv is None else None,
        "all_background": floor,
        "models": rows,
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2, default=float))
    table = results_markdown(rows, settings, floor)
    (out / "results.md").write_text(table)
    qualitative_grid(rows, out, args.grid_images, val, out / "qualitative.png")
    curve_figure(rows, settings, floor, out / "val_iou_curve.png")
    print(table)
    print(
        f"wrote {out / 'results.json'}, {out / 'results.md'}, {out / 'qualitative.png'}, "
        f"{out / 'val_iou_curve.png'} "
        f"({time.perf_counter() - t0:.0f} s)"
    )
    return 1 if any(r.get("failed") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
