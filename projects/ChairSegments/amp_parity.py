#!/usr/bin/env python
"""bf16 vs fp32 accuracy parity: one training of a config with a seed and a fixed number of
iterations, evaluated on val; prints one ``RESULT {json}`` line (README "Speed", parity table).

Both precisions use the same recipe, ``configs/ChairSegments/amp_parity/<config>.yaml``
(Adam lr 1e-3, batch 16, width x0.125, channels-last, cached images; U-Net 300 and FCN-8s 500
iterations) and 1 torch thread; a bf16 run is also evaluated in fp32 (``IoU_fp32_eval``).
Trailing ``KEY VALUE`` pairs override the config.

    python projects/ChairSegments/amp_parity.py --data-root DIR --config unet --amp True --seed 0 --iters 300
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from detectron2.utils.env import seed_all_rng

from semseg_heads.config import get_semseg_heads_cfg
from semseg_heads.data import register_chair_segments
from semseg_heads.engine import Trainer

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "ChairSegments" / "amp_parity"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", required=True, help="folder holding Chair064/{train,val}")
    p.add_argument(
        "--config", default="unet", help="a config of configs/ChairSegments/amp_parity/ (name) or a .yaml"
    )
    p.add_argument("--amp", choices=["True", "False"], required=True, help="SOLVER.AMP.ENABLED")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--iters", type=int, default=None, help="SOLVER.MAX_ITER (default: the config's)")
    p.add_argument("--output-dir", default="output/amp_parity")
    p.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="config overrides: KEY VALUE ...")
    args = p.parse_args()
    config = Path(args.config) if args.config.endswith(".yaml") else CONFIG_DIR / f"{args.config}.yaml"
    if not config.is_file():
        names = sorted(c.stem for c in CONFIG_DIR.glob("*.yaml") if not c.stem.startswith("Base-"))
        p.error(f"--config {args.config}: {config} does not exist (names: {', '.join(names)})")
    torch.set_num_threads(1)
    register_chair_segments(args.data_root, resolutions=[64], splits=["train", "val"])
    run = ["SEED", str(args.seed), "SOLVER.AMP.ENABLED", args.amp]
    run += ["OUTPUT_DIR", f"{args.output_dir}/{config.stem}_{args.amp}_{args.seed}"]
    run += [] if args.iters is None else ["SOLVER.MAX_ITER", str(args.iters)]
    cfg = get_semseg_heads_cfg(str(config), run + args.opts)
    cfg.freeze()
    seed_all_rng(args.seed)
    t0 = time.perf_counter()
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    res = trainer.last_eval_results
    out = {
        "arch": config.stem, "amp": args.amp, "seed": args.seed, "iters": cfg.SOLVER.MAX_ITER,
        "IoU": res["chair_segments"]["IoU"], "mIoU": res["sem_seg"]["mIoU"],
        "train_eval_s": round(time.perf_counter() - t0, 1),
    }  # fmt: skip
    if args.amp == "True":
        fp32 = cfg.clone()
        fp32.defrost()
        fp32.SOLVER.AMP.ENABLED = False
        out["IoU_fp32_eval"] = Trainer.test(fp32, trainer.model)["chair_segments"]["IoU"]
    print("RESULT", json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
