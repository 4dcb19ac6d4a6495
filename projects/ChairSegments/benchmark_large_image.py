#!/usr/bin/env python
"""Time and peak memory of inference on one large image: sliding window against whole image.

Each run (``MODE:SIDE``, e.g. ``slide:4096``) goes through ``Predictor`` (BGR image in, logits
out) in a fresh process, so that its peak memory is its own: the process's peak resident set
(``VmHWM``) is reset just before the call (``/proc/self/clear_refs``, Linux) and read after it;
"peak extra" is that peak minus the resident set before the call (model, image and libraries
already loaded). Weights are random: time and memory do not depend on them.

    python projects/ChairSegments/benchmark_large_image.py \\
        --runs slide:4096,slide:1024,whole:1024,whole:2048 \\
        MODEL.SEMSEG_HEADS.WIDTH_SCALE 0.125 TEST.SLIDING_WINDOW.TILE_SIZE 512 TEST.SLIDING_WINDOW.STRIDE 448

Figures and the machine they came from: docs/inference.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def _status_kib() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmHWM", "VmRSS")):
                key, value = line.split(":")
                out[key] = int(value.split()[0])
    return out


def _one_run(config_file: str, opts: list[str], mode: str, side: int, threads: int, queue: Any) -> None:
    import numpy as np
    import torch

    import semseg_heads  # noqa: F401  (registers the models)
    from semseg_heads.config import get_semseg_heads_cfg
    from semseg_heads.engine import Predictor

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = get_semseg_heads_cfg(config_file, ["MODEL.DEVICE", "cpu", *opts])
    predictor = Predictor(cfg)
    settings = replace(predictor.inference, mode=mode)
    image = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    # Warm-up on one tile-sized crop (oneDNN creates its kernels per input shape on first use):
    # "slide" is then timed with warm kernels; "whole" still pays that once, for its one shape.
    crop = min(side, settings.tile_size)
    predictor(image[:crop, :crop], inference=settings)
    before = _status_kib()["VmRSS"]
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current resident set
    t0 = time.perf_counter()
    out = predictor(image, inference=settings)["sem_seg"]
    seconds = time.perf_counter() - t0
    peak = _status_kib()["VmHWM"]
    queue.put(
        {
            "mode": mode,
            "side": side,
            "settings": settings.to_json(),
            "seconds": round(seconds, 2),
            "rss_before_mib": round(before / 1024),
            "peak_mib": round(peak / 1024),
            "peak_extra_mib": round((peak - before) / 1024),
            "output": list(out.shape),
        }
    )


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", default=str(REPO / "configs/ChairSegments/unet.yaml"))
    p.add_argument("--runs", default="slide:4096", help="comma-separated MODE:SIDE, MODE 'slide' or 'whole'")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    p.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="config overrides: KEY VALUE ...")
    args = p.parse_args(argv)
    runs = []
    for run in args.runs.split(","):
        mode, _, side = run.partition(":")
        if mode not in ("slide", "whole") or not side.isdigit():
            p.error(f"--runs takes MODE:SIDE with MODE 'slide' or 'whole' (e.g. slide:4096), got {run!r}")
        runs.append((mode, int(side)))
    ctx = mp.get_context("spawn")
    rows = []
    for mode, side in runs:
        queue = ctx.Queue()
        run_args = (args.config_file, args.opts, mode, side, args.threads, queue)
        proc = ctx.Process(target=_one_run, args=run_args)
        proc.start()
        proc.join()
        if proc.exitcode != 0:
            raise SystemExit(f"run {mode}:{side} failed (exit code {proc.exitcode})")
        rows.append(queue.get())
    print(f"config {args.config_file} {' '.join(args.opts)}; torch threads {args.threads}")
    print("| mode | image | tiles | seconds | peak RSS (MiB) | peak extra during the call (MiB) |")
    print("|---|---:|---|---:|---:|---:|")
    for r in rows:
        s = r["settings"]
        tiles = f"{s['tile_size']} px, stride {s['stride']}, {s['blend']}" if r["mode"] == "slide" else "-"
        print(
            f"| {r['mode']} | {r['side']}x{r['side']} | {tiles} | {r['seconds']} | {r['peak_mib']} "
            f"| {r['peak_extra_mib']} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
