#!/usr/bin/env python
"""The recipe study (issue 18): each CPU recipe of configs/ChairSegments/recipes/ trained with
its own settings for several seeds, then one table and one figure.

Every run is ``tools/train_net.py --resume --config-file <recipe> MODEL.DEVICE <device> SEED <s>
OUTPUT_DIR <output-dir>/<recipe>_s<s>`` in its own process, with ``--threads`` torch threads and at most
``--jobs`` at a time. Recipes run in the order given, each after the previous one's seeds
have all finished, so a later recipe can start from an earlier one's weights
(``--set RECIPE:KEY=VALUE``, where ``{output_dir}`` and ``{seed}`` are filled in). It resumes:
a run whose metrics.json holds its final evaluation is skipped, a killed one continues from
its last checkpoint. ``recipe_report.py --study`` then makes the table over seeds, beside the
paper, and the figure.

The study of projects/ChairSegments/RECIPES.md (section 7), U-Net, FCN-8s and Mask R-CNN
(from the semantic FPN run of section 2b) with seeds 1 and 2, two one-thread runs at a time:

    DETECTRON2_DATASETS=/work/data18 python projects/ChairSegments/run_recipes.py \\
        --output-dir /work/runs --seeds 1 2 --jobs 2 --threads 1 \\
        --recipes unet fcn8s mask_rcnn_R_18_FPN_semstart \\
        --set mask_rcnn_R_18_FPN_semstart:MODEL.WEIGHTS=/work/runs/semfpn/model_final.pth
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "configs" / "ChairSegments" / "recipes"


def recipe_path(name: str) -> Path:
    """A recipe name (``unet``) or a path to a .yaml file."""
    path = Path(name) if name.endswith(".yaml") else RECIPES / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in RECIPES.glob("*.yaml") if p.stem != "Base-Recipe")
        raise FileNotFoundError(f"no recipe '{name}' (expected {path}; recipes: {', '.join(known)})")
    return path


def parse_sets(specs: Sequence[str]) -> dict[str, list[str]]:
    """``RECIPE:KEY=VALUE`` options into {recipe: [KEY, VALUE, ...]}."""
    out: dict[str, list[str]] = {}
    for spec in specs:
        recipe, sep, assignment = spec.partition(":")
        key, eq, value = assignment.partition("=")
        if not (sep and eq and key):
            raise ValueError(f"--set '{spec}': expected RECIPE:KEY=VALUE, e.g. unet:SOLVER.MAX_ITER=100")
        out.setdefault(recipe, []).extend([key, value])
    return out


def finished(run_dir: Path) -> bool:
    """Whether the run's metrics.json holds an evaluation at or after its last iteration."""
    import yaml

    metrics, config = run_dir / "metrics.json", run_dir / "config.yaml"
    if not (metrics.is_file() and config.is_file()):
        return False
    max_iter = int((yaml.safe_load(config.read_text()) or {}).get("SOLVER", {}).get("MAX_ITER", 0))
    for line in metrics.read_text().splitlines():
        row = json.loads(line) if line.strip() else {}
        evaluated = any(k.startswith(("chair_segments/", "bbox/", "segm/", "sem_seg/")) for k in row)
        if evaluated and int(row.get("iteration", -1)) >= max_iter - 1:
            return True
    return False


def run_command(
    recipe: str, seed: int, output_dir: Path, opts: Sequence[str], train_net: str, device: str = "cpu"
) -> list[str]:
    """The tools/train_net.py command line of one run."""
    run_dir = output_dir / f"{Path(recipe).stem}_s{seed}"
    filled = [o.format(output_dir=output_dir, seed=seed) for o in opts]
    return [sys.executable, train_net, "--resume", "--config-file", str(recipe_path(recipe)),
            "MODEL.DEVICE", device, *filled, "SEED", str(seed), "OUTPUT_DIR", str(run_dir)]  # fmt: skip


def run_stage(commands: list[tuple[Path, list[str]]], jobs: int, threads: int) -> list[str]:
    """Runs the commands, ``jobs`` at a time; returns the run folders that failed."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    pending, running, failed = list(commands), [], []
    while pending or running:
        while pending and len(running) < jobs:
            run_dir, cmd = pending.pop(0)
            run_dir.mkdir(parents=True, exist_ok=True)
            log = open(run_dir / "train_net.out", "a")
            print(f"start {run_dir}: {' '.join(cmd)}", flush=True)
            running.append((run_dir, subprocess.Popen(cmd, env=env, stdout=log, stderr=log), log))
        time.sleep(1)
        for item in list(running):
            run_dir, proc, log = item
            if proc.poll() is not None:
                log.close()
                running.remove(item)
                ok = proc.returncode == 0 and finished(run_dir)
                print(f"{'done' if ok else 'FAILED'} {run_dir} (exit {proc.returncode})", flush=True)
                if not ok:
                    failed.append(str(run_dir))
    return failed


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipes", nargs="+", required=True, help="recipe names or .yaml paths, in run order")
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--output-dir", default="output/recipe_study")
    p.add_argument("--jobs", type=int, default=2, help="runs at a time")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--device", default="cpu", help="MODEL.DEVICE of every run (the recipes are CPU recipes)")
    # "extend": each --set adds to the list (with nargs alone a repeated --set replaced it).
    p.add_argument("--set", action="extend", nargs="+", default=[], metavar="RECIPE:KEY=VALUE",
                   help="overrides of one recipe ({output_dir}, {seed} filled in); repeatable")  # fmt: skip
    p.add_argument("--train-net", default=str(ROOT / "tools" / "train_net.py"), help=argparse.SUPPRESS)
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = p.parse_args(argv)
    try:
        sets = parse_sets(args.set)
        for r in [*args.recipes, *sets]:
            recipe_path(r)
        unknown = set(sets) - set(args.recipes)
        if unknown:
            raise ValueError(f"--set names recipes not in --recipes: {', '.join(sorted(unknown))}")
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    output_dir = Path(args.output_dir).resolve()
    for recipe in args.recipes:
        stage = []
        for seed in args.seeds:
            cmd = run_command(recipe, seed, output_dir, sets.get(recipe, []), args.train_net, args.device)
            run_dir = Path(cmd[-1])
            if finished(run_dir):
                print(f"skip {run_dir}: finished", flush=True)
            elif args.dry_run:
                print(" ".join(cmd))
            else:
                stage.append((run_dir, cmd))
        failed = run_stage(stage, args.jobs, args.threads)
        if failed:
            print(f"error: runs failed (their train_net.out says why): {', '.join(failed)}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
