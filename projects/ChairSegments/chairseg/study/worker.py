"""One model of the study in its own process (peak memory is per model), and the parent loop
that starts them."""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from chairseg.study.plan import (
    CURVE_FILE,
    GRID_MAX,
    REPO,
    RESULT_FILE,
    SETTINGS_FILE,
    build_cfg,
    calibrate_iters,
    config_path,
    register_data,
    run_name,
    study_runs,
)

RUN_STUDY = Path(__file__).resolve().parents[2] / "run_study.py"
logger = logging.getLogger("chairseg.study")


class BudgetReached(Exception):
    """Raised by ``StudyClock`` to leave Detectron2's training loop early."""


def _study_trainer(budget_seconds: float | None, eval_points: int, curve_path: Path):
    """The project's ``Trainer`` with the study's clock as its first hook (``StudyClock``)."""
    from detectron2.engine import HookBase, hooks

    from semseg_heads.engine import Trainer

    class StudyClock(HookBase):
        """Training time (evaluations excluded), evaluations on the way and the wall-clock cap.

        - At each of ``eval_points`` equal shares of the budget (minutes, or iterations when the
          budget is iterations) it evaluates on val with the Trainer's evaluators, appends
          ``{"iter", "train_seconds", "metrics"}`` to ``curve_path`` and saves a checkpoint there,
          so a killed run resumes from its last point with its curve and clock.
        - With a minutes budget, when the time is up after an iteration it makes that iteration
          the last one (trainer's and checkpointer's ``max_iter``), so the hooks after it save
          ``model_final`` and Detectron2's ``after_train`` evaluates as after a normal end; the
          next ``before_step`` raises ``BudgetReached`` to leave the loop.
        """

        offset = 0.0  # training seconds before this process (set when resuming)

        def before_train(self) -> None:
            self.start = time.perf_counter() - self.offset
            self.paused = 0.0
            self.stop = False
            self.saved: str | None = None
            self.next_point = math.floor(self._progress(self.trainer.start_iter) * eval_points) + 1

        def train_seconds(self) -> float:
            return time.perf_counter() - self.start - self.paused

        def _progress(self, done: int) -> float:
            if budget_seconds is None:
                return done / self.trainer.max_iter
            return self.train_seconds() / budget_seconds

        def before_step(self) -> None:
            if self.stop:
                raise BudgetReached(
                    f"wall-clock budget of {budget_seconds:.0f} s used after {self.trainer.iter} "
                    "iterations: training ends here (the study's --minutes budget)"
                )

        def after_step(self) -> None:
            done = self.trainer.iter + 1
            progress = self._progress(done)
            if budget_seconds is not None and progress >= 1 and done < self.trainer.max_iter:
                self.trainer.max_iter = done
                for h in self.trainer.periodic_checkpointers:
                    h.max_iter = done
                self.stop = True
            # The last point is Detectron2's own evaluation after training (run_worker adds it).
            if done < self.trainer.max_iter and progress >= self.next_point / eval_points:
                self.next_point = math.floor(progress * eval_points) + 1
                self._evaluate(done)

        def _evaluate(self, done: int) -> None:
            t0 = time.perf_counter()
            seconds = self.train_seconds()
            results = Trainer.test(self.trainer.cfg, self.trainer.model)
            with open(curve_path, "a") as f:
                point = {"iter": done, "train_seconds": seconds, "metrics": _metrics(results)}
                f.write(json.dumps(point, default=float) + "\n")
            name = f"model_{done - 1:07d}"
            self.trainer.checkpointer.save(name, iteration=done - 1)
            if self.saved:  # one checkpoint on the way is enough to resume from
                Path(self.trainer.cfg.OUTPUT_DIR, self.saved + ".pth").unlink(missing_ok=True)
            self.saved = name
            self.paused += time.perf_counter() - t0

        def after_train(self) -> None:
            self.final_seconds = self.train_seconds()

    class StudyTrainer(Trainer):
        def build_hooks(self) -> list:
            self.clock = StudyClock()
            built = super().build_hooks()
            # Kept here, so the clock can end training early without reading the hook list.
            self.periodic_checkpointers = [h for h in built if isinstance(h, hooks.PeriodicCheckpointer)]
            return [self.clock] + built

    return StudyTrainer


def read_curve(path: Path, upto_iter: int | None = None) -> list[dict]:
    """The evaluation points of ``path``; with ``upto_iter``, the later ones are dropped from the
    file too (a resumed run trains them again from its checkpoint)."""
    if not path.exists():
        return []
    points = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if upto_iter is not None:
        points = [p for p in points if p["iter"] <= upto_iter]
        path.write_text("".join(json.dumps(p, default=float) + "\n" for p in points))
    return points


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


def _val_inputs(cfg, n: int) -> list[dict]:
    from detectron2.data import DatasetCatalog, DatasetMapper

    mapper = DatasetMapper(cfg, is_train=False)
    records = DatasetCatalog.get(cfg.DATASETS.TEST[0])[:n]
    return [mapper(r) for r in records]


def _chair_maps(outputs: list[dict], dataset_name: str) -> list[np.ndarray]:
    """Predicted chair/background map per output (semantic argmax, or merged instances)."""
    from detectron2.data import MetadataCatalog

    from semseg_heads.evaluation import background_id, foreground_map

    bg = background_id(MetadataCatalog.get(dataset_name).get("stuff_classes", None))
    return [foreground_map(out, bg, score_threshold=0.5) for out in outputs]


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


def run_worker(config: str, out: Path, seed: int) -> None:
    import torch
    from detectron2.utils.events import EventStorage

    from chairseg.measure.timing import (
        count_gmacs,
        count_parameters,
        peak_gpu_mb,
        peak_rss_mb,
        time_calls,
    )
    from semseg_heads.amp import AutocastInference, amp_settings
    from semseg_heads.engine import Trainer
    from semseg_heads.utils.io import write_json_atomic

    settings = json.loads((out / SETTINGS_FILE).read_text())
    torch.set_num_threads(settings["threads"])
    register_data(settings)
    name = run_name(config, seed, settings["seeds"][0])
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
            max_iter = calibrate_iters(config_file, settings, settings["budget"]["minutes"], seed)
        plan_path.write_text(json.dumps({"max_iter": max_iter}))

    cfg = build_cfg(config_file, settings, model_dir, max_iter, seed)
    minutes = settings["budget"].get("minutes")
    curve_path = model_dir / CURVE_FILE
    budget_seconds = None if minutes is None else minutes * 60
    trainer = _study_trainer(budget_seconds, settings["eval_points"], curve_path)(cfg)
    timer = _step_timer(warmup=min(3, max(0, (max_iter - 1) // 2)))
    trainer.register_hooks([timer])
    trainer.resume_or_load(resume=True)
    start_iter = trainer.start_iter
    # A resumed run continues its curve and clock from its checkpoint (saved at an evaluation
    # point; estimated from the pace if it is another).
    points = read_curve(curve_path, upto_iter=start_iter)
    if start_iter and points:
        at = [p["train_seconds"] for p in points if p["iter"] == start_iter]
        trainer.clock.offset = at[0] if at else points[-1]["train_seconds"] * start_iter / points[-1]["iter"]
    t0 = time.perf_counter()
    try:
        trainer.train()
    except BudgetReached as e:
        logger.info(str(e))
    train_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    results = trainer.last_eval_results or Trainer.test(cfg, trainer.model)
    eval_seconds = time.perf_counter() - t0
    metrics = _metrics(results)
    curve = read_curve(curve_path) + [
        {"iter": trainer.iter, "train_seconds": trainer.clock.final_seconds, "metrics": metrics}
    ]
    write_json_atomic(curve, model_dir / "val_curve.json", indent=1, default=float)

    model = trainer.model
    model.eval()
    grid = _val_inputs(cfg, max(GRID_MAX, settings["batch"]))
    inputs = grid[: settings["batch"]]
    outputs: list[dict] = []

    amp = amp_settings(cfg)
    infer_model = AutocastInference(model, amp) if amp.enabled else model  # as evaluation runs

    def infer() -> None:
        with torch.no_grad():
            outputs[:] = infer_model(inputs)

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
            outputs += infer_model(grid[i : i + settings["batch"]])
    maps = _chair_maps(outputs[: len(grid)], cfg.DATASETS.TEST[0])
    np.savez_compressed(
        model_dir / "grid_predictions.npz",
        file_names=np.array([d["file_name"] for d in grid]),
        maps=np.stack(maps).astype(np.uint8),
    )
    train_times = timer.times
    result = {
        "model": name,
        "seed": seed,
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
        "train_seconds_without_evals": trainer.clock.final_seconds,
        "metrics": metrics,
        "val_curve": curve,
        "eval_results": json.loads(json.dumps(results, default=float)),
    }
    # Written last, atomically: its presence means "finished".
    write_json_atomic(result, model_dir / RESULT_FILE, indent=2, default=float)


def run_models(configs: list[str], out: Path, settings: dict) -> list[dict]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    rows = []
    for config, seed in study_runs(configs, settings["seeds"], settings["seeded_models"]):
        name = run_name(config, seed, settings["seeds"][0])
        result_path = out / name / RESULT_FILE
        if result_path.exists():
            logger.info(f"{name}: finished earlier ({result_path}), not retrained")
        else:
            (out / name).mkdir(parents=True, exist_ok=True)
            log_path = out / name / "study_worker.log"
            logger.info(f"{name}: training ({config_path(config)}, seed {seed}), log {log_path}")
            t0 = time.perf_counter()
            with open(log_path, "a") as log:
                cmd = [sys.executable, str(RUN_STUDY), "--worker", config, "--worker-seed", str(seed)]
                proc = subprocess.run(
                    cmd + ["--output-dir", str(out)], stdout=log, stderr=subprocess.STDOUT, env=env
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
