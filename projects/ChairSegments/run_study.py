#!/usr/bin/env python
"""The Chair Segments study: every model config plus Mask R-CNN, one budget, one table.

For each config, in its own process (so peak memory is per model): build it with the same
overrides (device, batch, width scale, budget), train it with ``semseg_heads.engine.Trainer``,
evaluate it on val with the Trainer's evaluators (``SemSegEvaluator`` + the paper's metrics;
``COCOEvaluator`` for Mask R-CNN), and measure parameters, GMACs per 64x64 image (fvcore),
training and inference images/s and peak memory. The parent then writes ``results.json``,
``results.md`` and ``qualitative.png`` (a row per val image; input, ground truth, then a
column per model).

It resumes: a model whose ``study_result.json`` exists is not retrained, and a model killed
mid-training continues from its last checkpoint. Settings are stored in
``study_settings.json``; rerunning with different settings into the same folder is refused.

CPU, small (about 40 minutes here on 2 cores):

    python projects/ChairSegments/run_study.py --width-scale 0.125 --minutes 2.5

GPU at paper widths (same script, no changes):

    python projects/ChairSegments/run_study.py --width-scale 1 --iters 20000 \
        --data-root $DETECTRON2_DATASETS/ChairSegments --output-dir output/chair_study_gpu
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tools"))

MODEL_CONFIGS = [
    "fcn32s",
    "fcn16s",
    "fcn8s",
    "fcn_R_50",
    "fcn_R_101",
    "unet",
    "deconvnet",
    "dilated_frontend",
    "dilated_basic",
    "dilated_large",
    "mask_rcnn_R_50_FPN",
]
RESULT_FILE = "study_result.json"
SETTINGS_FILE = "study_settings.json"
RESOLUTION = 64
GRID_MAX = 8  # val images each model predicts for the qualitative grid

logger = logging.getLogger("chair_study")


# --------------------------------------------------------------------------- settings


def config_path(name: str) -> Path:
    p = Path(name)
    if p.suffix == ".yaml":
        return p if p.is_absolute() else (Path.cwd() / p)
    return REPO / "configs" / "ChairSegments" / f"{name}.yaml"


def model_name(config: str) -> str:
    return Path(config).stem


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument(
        "--configs",
        nargs="+",
        default=MODEL_CONFIGS,
        help="config names under configs/ChairSegments/ or paths to .yaml files (default: all 11)",
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
    p.add_argument("--force", action="store_true", help="accept changed settings for an existing output dir")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="config overrides for every model")
    return p


def study_settings(args: argparse.Namespace) -> dict:
    import torch

    if args.iters is None and args.minutes is None:
        raise SystemExit("give a budget: --iters N (same iterations) or --minutes M (same wall-clock)")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(args.output_dir).resolve()
    data_root = Path(args.data_root).resolve() if args.data_root else out / "data" / "ChairSegments"
    return {
        "budget": {"iters": args.iters} if args.iters is not None else {"minutes": args.minutes},
        "batch": args.batch,
        "width_scale": args.width_scale,
        "num_workers": args.num_workers,
        "threads": args.threads,
        "device": device,
        "data_root": str(data_root),
        "generated_data": None if args.data_root else {"train": args.train_images, "val": args.val_images},
        "opts": list(args.opts),
    }


def check_settings(out: Path, settings: dict, force: bool) -> None:
    path = out / SETTINGS_FILE
    if path.exists():
        old = json.loads(path.read_text())
        if old != settings and not force:
            changed = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
            raise SystemExit(
                f"{path} was written with other settings (changed: {', '.join(changed)}); the models "
                "there would not be comparable. Use another --output-dir, or --force to keep the "
                "finished models and train the rest with the new settings."
            )
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=2))


def prepare_data(settings: dict) -> None:
    """Use the given Chair064, or generate one in the official layout when there is none."""
    from semseg_heads.data.chair_segments import find_or_generate_chair_segments

    root = settings["data_root"]
    generated = settings["generated_data"]
    try:
        find_or_generate_chair_segments(
            [root], None if generated is None else root, generated or {"train": 0, "val": 0},
            resolution=RESOLUTION,
        )
    except FileNotFoundError as e:
        raise SystemExit(f"--data-root {root}: {e}") from e


def register_data(settings: dict) -> None:
    from semseg_heads.data import register_chair_segments

    register_chair_segments(settings["data_root"])


# --------------------------------------------------------------------------- one model (worker)


def build_cfg(
    config_file: Path, settings: dict, output_dir: Path, max_iter: int | None, extra: list | None = None
):
    """The config exactly as ``tools/train_net.py`` builds it (with its ``default_setup``:
    logging, config.yaml, seed), with the study's overrides."""
    import train_net

    opts = study_opts(config_file, settings, output_dir, max_iter, extra)
    return train_net.setup(argparse.Namespace(config_file=str(config_file), opts=opts, eval_only=False))


def study_opts(
    config_file: Path, settings: dict, output_dir: Path, max_iter: int | None, extra: list | None = None
) -> list[str]:
    """The ``KEY VALUE`` overrides every model of the study gets."""
    from semseg_heads.config import get_semseg_heads_cfg

    opts = list(settings["opts"])
    opts += ["MODEL.DEVICE", settings["device"], "SOLVER.IMS_PER_BATCH", settings["batch"]]
    if settings["width_scale"] is not None:
        opts += ["MODEL.SEMSEG_HEADS.WIDTH_SCALE", settings["width_scale"]]
    if settings["num_workers"] is not None:
        opts += ["DATALOADER.NUM_WORKERS", settings["num_workers"]]
    if max_iter is not None:
        # The config's schedule, compressed to the budget: LR steps keep their relative place,
        # warm-up at most a tenth of the run.
        base = get_semseg_heads_cfg(str(config_file), settings["opts"])
        scale = max_iter / max(1, base.SOLVER.MAX_ITER)
        steps = tuple(s2 for s2 in (round(s * scale) for s in base.SOLVER.STEPS) if 0 < s2 < max_iter)
        opts += [
            "SOLVER.MAX_ITER", max_iter,
            "SOLVER.STEPS", steps,
            "SOLVER.WARMUP_ITERS", min(base.SOLVER.WARMUP_ITERS, max_iter // 10),
            "SOLVER.CHECKPOINT_PERIOD", max(1, math.ceil(max_iter / 4)),
        ]  # fmt: skip
    # Evaluate once, at the end (the Trainer's EvalHook).
    opts += ["TEST.EVAL_PERIOD", 0, "SEED", 0, "OUTPUT_DIR", str(output_dir)] + list(extra or [])
    return [str(o) for o in opts]


class BudgetReached(Exception):
    """Raised by ``WallClockBudget`` to leave Detectron2's training loop early."""


def _study_trainer(budget_seconds: float | None):
    """The project's ``Trainer`` with a wall-clock cap on training, when the budget is minutes.

    Calibrated iterations can overrun when other processes load the machine; the cap keeps
    each model to its minutes. It must be the first hook: when the time is up after an
    iteration, it makes that iteration the last one (trainer's and checkpointer's
    ``max_iter``), so the hooks after it save ``model_final`` and Detectron2's ``after_train``
    evaluates as after a normal end; the next ``before_step`` raises ``BudgetReached`` to leave
    the loop.
    """
    from detectron2.engine import HookBase, hooks

    from semseg_heads.engine import Trainer

    class WallClockBudget(HookBase):
        def before_train(self) -> None:
            self.start = time.perf_counter()
            self.stop = False

        def before_step(self) -> None:
            if self.stop:
                raise BudgetReached(
                    f"wall-clock budget of {budget_seconds:.0f} s used after {self.trainer.iter} "
                    "iterations: training ends here (the study's --minutes budget)"
                )

        def after_step(self) -> None:
            last = self.trainer.iter + 1
            if time.perf_counter() - self.start >= budget_seconds and last < self.trainer.max_iter:
                self.trainer.max_iter = last
                for h in self.trainer._hooks:
                    if isinstance(h, hooks.PeriodicCheckpointer):
                        h.max_iter = last
                self.stop = True

    class StudyTrainer(Trainer):
        def build_hooks(self) -> list:
            return [WallClockBudget()] + super().build_hooks()

    return Trainer if budget_seconds is None else StudyTrainer


def _step_timer(warmup: int):
    """A hook that records the wall time of every training iteration (all hooks included)."""
    from detectron2.engine import HookBase

    class StepTimer(HookBase):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.count = 0

        def before_train(self) -> None:
            self.last = time.perf_counter()

        def after_step(self) -> None:
            now = time.perf_counter()
            final = self.trainer.iter + 1 >= self.trainer.max_iter  # final checkpoint save
            if self.count >= warmup and not final:
                self.times.append(now - self.last)
            self.count += 1
            self.last = time.perf_counter()

    return StepTimer()


def calibrate_iters(config_file: Path, settings: dict, minutes: float) -> int:
    """Iterations that fill ``minutes`` of training, timed on this machine with the same Trainer.

    Steps are driven one by one (no hooks, which cost nothing measurable here) so that an
    expensive model stops early: when its first step alone is over a tenth of the budget, that
    step (slower than later ones, so a conservative estimate) is the estimate.
    """
    import statistics
    import tempfile

    from detectron2.utils.events import EventStorage

    from semseg_heads.config import get_semseg_heads_cfg
    from semseg_heads.engine import Trainer

    budget = minutes * 60
    with tempfile.TemporaryDirectory() as tmp:
        cfg = get_semseg_heads_cfg(str(config_file), study_opts(config_file, settings, Path(tmp), None))
        cfg.DATASETS.TEST = ()
        cfg.freeze()
        trainer = Trainer(cfg)
        times: list[float] = []
        with EventStorage(0):
            while True:
                trainer.iter = len(times)
                start = time.perf_counter()
                trainer.run_step()
                times.append(time.perf_counter() - start)
                if times[0] > budget / 10 or len(times) >= 4 or sum(times) > max(20.0, budget / 10):
                    break
        step = times[0] if len(times) == 1 else statistics.median(times[1:])
        del trainer
    # Planned at twice the calibrated count: other processes make the step time swing by 2x
    # and more here, and the wall-clock cap (``_study_trainer``) is what ends training; the plan
    # sets the LR schedule (warm-up, steps) and ends a model early only if it got much faster.
    iters = max(2, int(2 * budget / step))
    logger.info(
        f"calibration: {len(times)} steps, {step:.3f} s/iter -> {iters} planned iterations "
        f"(twice what fits in {minutes} min; the clock ends training)"
    )
    return iters


def _val_inputs(cfg, n: int) -> list[dict]:
    from detectron2.data import DatasetCatalog, DatasetMapper

    mapper = DatasetMapper(cfg, is_train=False)
    records = DatasetCatalog.get(cfg.DATASETS.TEST[0])[:n]
    return [mapper(r) for r in records]


def _chair_maps(outputs: list[dict], dataset_name: str) -> list[np.ndarray]:
    """Predicted chair/background map per output (semantic argmax, or merged instances)."""
    from detectron2.data import MetadataCatalog

    from semseg_heads.evaluation import background_id, merge_instances

    bg = background_id(MetadataCatalog.get(dataset_name).get("stuff_classes", None))
    maps = []
    for out in outputs:
        if "sem_seg" in out:
            maps.append((out["sem_seg"].argmax(0) != bg).cpu().numpy())
        else:
            maps.append(merge_instances(out["instances"].to("cpu"), 0.5))
    return maps


def _metrics(results: dict) -> dict:
    """The table's columns from the Trainer's evaluation results."""
    paper = results.get("chair_segments", {})
    out = {k: paper.get(k) for k in ("Prec", "IoU", "Dice", "mIoU")}
    if "sem_seg" in results:
        out["mIoU_sem_seg"] = results["sem_seg"].get("mIoU")
    for task, key in (("bbox", "box_AP"), ("segm", "mask_AP")):
        if task in results:
            out[key] = results[task].get("AP")
    return out


def run_worker(config: str, out: Path) -> None:
    import torch
    from detectron2.utils.events import EventStorage

    from semseg_heads.engine import Trainer
    from semseg_heads.utils.benchmark import (
        count_gmacs,
        count_parameters,
        peak_gpu_mb,
        peak_rss_mb,
        time_calls,
    )
    from semseg_heads.utils.io import write_json_atomic

    settings = json.loads((out / SETTINGS_FILE).read_text())
    torch.set_num_threads(settings["threads"])
    register_data(settings)
    name = model_name(config)
    model_dir = out / name
    model_dir.mkdir(parents=True, exist_ok=True)
    config_file = config_path(config)

    plan_path = model_dir / "study_plan.json"
    if plan_path.exists():
        max_iter = json.loads(plan_path.read_text())["max_iter"]
    else:
        if "iters" in settings["budget"]:
            max_iter = settings["budget"]["iters"]
        else:
            max_iter = calibrate_iters(config_file, settings, settings["budget"]["minutes"])
        plan_path.write_text(json.dumps({"max_iter": max_iter}))

    cfg = build_cfg(config_file, settings, model_dir, max_iter)
    minutes = settings["budget"].get("minutes")
    trainer = _study_trainer(None if minutes is None else minutes * 60)(cfg)
    timer = _step_timer(warmup=min(3, max(0, (max_iter - 1) // 2)))
    trainer.register_hooks([timer])
    trainer.resume_or_load(resume=True)
    start_iter = trainer.start_iter
    t0 = time.perf_counter()
    try:
        trainer.train()
    except BudgetReached as e:
        logger.info(str(e))
    train_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    results = trainer.last_eval_results or Trainer.test(cfg, trainer.model)
    eval_seconds = time.perf_counter() - t0

    model = trainer.model
    model.eval()
    grid = _val_inputs(cfg, max(GRID_MAX, settings["batch"]))
    inputs = grid[: settings["batch"]]
    outputs: list[dict] = []

    def infer() -> None:
        with torch.no_grad():
            outputs[:] = model(inputs)

    # Cheap models get many timed calls (median of them), costly ones (Mask R-CNN) at least 3.
    infer()
    infer_times: list[float] = []
    while len(infer_times) < 3 or (sum(infer_times) < 5.0 and len(infer_times) < 30):
        infer_times += time_calls(infer, warmup=0, iters=1, device=cfg.MODEL.DEVICE)
    # Mask R-CNN's cost depends on its detections: average it over a few images.
    semantic = cfg.MODEL.META_ARCHITECTURE != "GeneralizedRCNN"
    gmacs, gmacs_error = None, None
    try:
        with EventStorage():
            gmacs = count_gmacs(model, inputs[: 1 if semantic else 2])
    except Exception as e:  # a count that cannot be traced must not lose the trained model's row
        gmacs_error = f"{type(e).__name__}: {e}"
        logger.exception(f"{name}: counting GMACs failed")
    # The grid reuses the timed batch's predictions; only a batch smaller than it needs more.
    grid = grid[:GRID_MAX]
    with torch.no_grad():
        for i in range(len(outputs), len(grid), settings["batch"]):
            outputs += model(grid[i : i + settings["batch"]])
    maps = _chair_maps(outputs[: len(grid)], cfg.DATASETS.TEST[0])
    np.savez_compressed(
        model_dir / "grid_predictions.npz",
        file_names=np.array([d["file_name"] for d in grid]),
        maps=np.stack(maps).astype(np.uint8),
    )
    train_times = timer.times
    result = {
        "model": name,
        "config": str(config_file.relative_to(REPO))
        if config_file.is_relative_to(REPO)
        else str(config_file),
        "meta_arch": cfg.MODEL.META_ARCHITECTURE,
        "width_scale": cfg.MODEL.SEMSEG_HEADS.WIDTH_SCALE,
        "optimizer": type(trainer.optimizer).__name__,
        "base_lr": cfg.SOLVER.BASE_LR,
        "iters": trainer.iter,  # iterations trained (fewer than planned when the clock ran out)
        "planned_iters": max_iter,
        "resumed_from_iter": start_iter,
        "batch": cfg.SOLVER.IMS_PER_BATCH,
        "params": count_parameters(model),
        "gmacs_per_image": gmacs,
        "gmacs_error": gmacs_error,
        "train_images_per_s": cfg.SOLVER.IMS_PER_BATCH / float(np.mean(train_times)) if train_times else None,
        "timed_train_iters": len(train_times),
        "infer_images_per_s": len(inputs) / float(np.median(infer_times)),
        "infer_timed_calls": len(infer_times),
        "peak_rss_mb": peak_rss_mb(),
        "peak_gpu_mb": peak_gpu_mb(cfg.MODEL.DEVICE),
        "train_seconds": train_seconds,
        # Other processes on the machine slow every timing down; this says how busy it was.
        "load_avg_1min_at_end": os.getloadavg()[0],
        "eval_seconds": eval_seconds,
        "metrics": _metrics(results),
        "eval_results": json.loads(json.dumps(results, default=float)),
    }
    # Written last, atomically: its presence means "finished".
    write_json_atomic(result, model_dir / RESULT_FILE, indent=2, default=float)


# --------------------------------------------------------------------------- the study (parent)


def run_models(configs: list[str], out: Path, settings: dict) -> list[dict]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    rows = []
    for config in configs:
        name = model_name(config)
        result_path = out / name / RESULT_FILE
        if result_path.exists():
            logger.info(f"{name}: finished earlier ({result_path}), not retrained")
        else:
            (out / name).mkdir(parents=True, exist_ok=True)
            log_path = out / name / "study_worker.log"
            logger.info(f"{name}: training ({config_path(config)}), log {log_path}")
            t0 = time.perf_counter()
            with open(log_path, "a") as log:
                proc = subprocess.run(
                    [
                        sys.executable,
                        str(Path(__file__).resolve()),
                        "--worker",
                        config,
                        "--output-dir",
                        str(out),
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
            if proc.returncode != 0 or not result_path.exists():
                tail = log_path.read_text().splitlines()[-15:]
                logger.error(
                    f"{name}: failed (exit {proc.returncode}); last lines of {log_path}:\n" + "\n".join(tail)
                )
                rows.append({"model": name, "config": config, "failed": True, "log": str(log_path)})
                continue
            logger.info(f"{name}: done in {time.perf_counter() - t0:.0f} s")
        rows.append(json.loads(result_path.read_text()))
    return rows


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

    from semseg_heads.evaluation import read_label_map

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
        gt = read_label_map(rec["sem_seg_file_name"], 256, 255) == 1
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


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s %(name)s] %(message)s", datefmt="%H:%M:%S")
    out = Path(args.output_dir).resolve()
    if args.worker:
        run_worker(args.worker, out)
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
    (out / "results.md").write_text(results_markdown(rows, settings, floor))
    qualitative_grid(rows, out, args.grid_images, val, out / "qualitative.png")
    print(results_markdown(rows, settings, floor))
    print(
        f"wrote {out / 'results.json'}, {out / 'results.md'}, {out / 'qualitative.png'} "
        f"({time.perf_counter() - t0:.0f} s)"
    )
    return 1 if any(r.get("failed") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
