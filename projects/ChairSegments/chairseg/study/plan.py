"""The study's plan: which configs, settings (stored and checked), data, per-model configs and the
iteration budget."""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[3]

#: The study's configs (configs/ChairSegments/study/): the scratch recipes (no ImageNet start is
#: reachable here, and the papers' recipes assume one, issue 12) with the study's settings
#: (study/Base-Study.yaml). Any other config stays selectable by name or path.
MODEL_CONFIGS = [
    "study/fcn32s",
    "study/fcn16s",
    "study/fcn8s",
    "study/fcn_R_50",
    "study/fcn_R_101",
    "study/unet",
    "study/deconvnet",
    "study/dilated_frontend",
    "study/dilated_basic",
    "study/dilated_large",
    "study/mask_rcnn_R_18_FPN",
]
#: Models trained once per seed of ``--seeds`` (the others with the first seed only).
SEEDED_MODELS = ["unet", "fcn8s"]
SEEDS = [0, 1, 2]
CURVE_FILE = "val_curve.jsonl"
RESULT_FILE = "study_result.json"
SETTINGS_FILE = "study_settings.json"
RESOLUTION = 64
GRID_MAX = 8  # val images each model predicts for the qualitative grid

logger = logging.getLogger("chairseg.study")


def config_path(name: str) -> Path:
    p = Path(name)
    if p.suffix == ".yaml":
        return p if p.is_absolute() else (Path.cwd() / p)
    return REPO / "configs" / "ChairSegments" / f"{name}.yaml"


def model_name(config: str) -> str:
    return Path(config).stem


def run_name(config: str, seed: int, first_seed: int) -> str:
    """The run's folder and table name: the config's stem, with the seed unless it is the first."""
    return model_name(config) if seed == first_seed else f"{model_name(config)}_seed{seed}"


def study_runs(configs: list[str], seeds: list[int], seeded: list[str]) -> list[tuple[str, int]]:
    """(config, seed) pairs: every config with the first seed, the seeded models with all."""
    return [(c, s) for c in configs for s in (seeds if model_name(c) in seeded else seeds[:1])]


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
        "seeds": list(args.seeds),
        "seeded_models": list(args.seeded_models),
        "eval_points": args.eval_points,
        "plan_factor": args.plan_factor,
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
    from chairseg.data.prepare import find_or_generate_chair_segments

    root = settings["data_root"]
    generated = settings["generated_data"]
    try:
        find_or_generate_chair_segments(
            [root],
            None if generated is None else root,
            generated or {"train": 0, "val": 0},
            resolution=RESOLUTION,
        )
    except FileNotFoundError as e:
        raise SystemExit(f"--data-root {root}: {e}") from e


def register_data(settings: dict) -> None:
    from semseg_heads.data import register_chair_segments

    register_chair_segments(settings["data_root"])


def build_cfg(
    config_file: Path,
    settings: dict,
    output_dir: Path,
    max_iter: int | None,
    seed: int = 0,
    extra: list | None = None,
):
    """The config as ``tools/train_net.py`` builds it (Detectron2's ``default_setup``: logging,
    config.yaml, seed), with the study's overrides."""
    from detectron2.engine import default_setup

    from semseg_heads.config import get_semseg_heads_cfg

    opts = study_opts(config_file, settings, output_dir, max_iter, seed, extra)
    cfg = get_semseg_heads_cfg(str(config_file), opts)
    cfg.freeze()
    default_setup(cfg, argparse.Namespace(config_file=str(config_file), opts=opts, eval_only=False))
    return cfg


def study_opts(
    config_file: Path,
    settings: dict,
    output_dir: Path,
    max_iter: int | None,
    seed: int = 0,
    extra: list | None = None,
) -> list[str]:
    """The ``KEY VALUE`` overrides every model of the study gets from the command line (its
    recipe and the study's fixed settings are the config's, e.g. study/Base-Study.yaml)."""
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
            # Checkpoints are saved at the study's evaluation points (worker.StudyClock) and at
            # the end; no periodic ones in between.
            "SOLVER.CHECKPOINT_PERIOD", max_iter + 1,
        ]  # fmt: skip
    # The Trainer's EvalHook evaluates at the end; worker.StudyClock on the way.
    opts += ["TEST.EVAL_PERIOD", 0, "SEED", seed, "OUTPUT_DIR", str(output_dir)] + list(extra or [])
    return [str(o) for o in opts]


def calibrate_iters(config_file: Path, settings: dict, minutes: float, seed: int = 0) -> int:
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
        cfg = get_semseg_heads_cfg(str(config_file), study_opts(config_file, settings, Path(tmp), None, seed))
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
    # The plan sets the LR schedule (warm-up, cosine or steps): at factor 1 the schedule ends
    # with the budget on an idle machine. The wall-clock cap (``_study_trainer``) ends training
    # when the machine is slower; a larger factor leaves room for load (step times swing by 2x
    # and more when other processes run) at the price of ending mid-schedule.
    factor = settings.get("plan_factor", 1.0)
    iters = max(2, int(factor * budget / step))
    logger.info(
        f"calibration: {len(times)} steps, {step:.3f} s/iter -> {iters} planned iterations "
        f"({factor}x what fits in {minutes} min; the clock ends training if they take longer)"
    )
    return iters
