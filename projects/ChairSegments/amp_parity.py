#!/usr/bin/env python
"""bf16 vs fp32 accuracy parity: one training of a config with a seed and a fixed number of
iterations, evaluated on val; prints one ``RESULT {json}`` line (README "Speed", parity table).

Both precisions use the same recipe (Adam lr 1e-3, batch 16, width x0.125, channels-last,
cached images, 1 torch thread); a bf16 run is also evaluated in fp32 (``IoU_fp32_eval``).

    python projects/ChairSegments/amp_parity.py --data-root DIR --config unet --amp True --seed 0 --iters 300
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from detectron2.utils.env import seed_all_rng

from semseg_heads.config import get_semseg_heads_cfg
from semseg_heads.data import register_chair_segments
from semseg_heads.engine import Trainer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", required=True, help="folder holding Chair064/{train,val}")
    p.add_argument("--config", default="unet", help="configs/ChairSegments/<name>.yaml")
    p.add_argument("--amp", choices=["True", "False"], required=True, help="SOLVER.AMP.ENABLED")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--iters", type=int, default=300)
    p.add_argument("--output-dir", default="output/amp_parity")
    args = p.parse_args()
    torch.set_num_threads(1)
    register_chair_segments(args.data_root, resolutions=[64], splits=["train", "val"])
    cfg = get_semseg_heads_cfg(f"configs/ChairSegments/{args.config}.yaml", [
        "MODEL.DEVICE", "cpu", "MODEL.SEMSEG_HEADS.WIDTH_SCALE", "0.125",
        "DATASETS.TRAIN", "('chair_segments_64_train',)", "DATASETS.TEST", "('chair_segments_64_val',)",
        "SOLVER.OPTIMIZER", "Adam", "SOLVER.BASE_LR", "0.001", "SOLVER.WEIGHT_DECAY", "0.0",
        "SOLVER.IMS_PER_BATCH", "16", "SOLVER.MAX_ITER", str(args.iters), "SOLVER.WARMUP_ITERS", "0",
        "SOLVER.STEPS", "()", "SOLVER.CHECKPOINT_PERIOD", "100000", "TEST.EVAL_PERIOD", "0",
        "SOLVER.LOG_PERIOD", "100", "SEED", str(args.seed),
        "OUTPUT_DIR", f"{args.output_dir}/{args.config}_{args.amp}_{args.seed}",
        "SOLVER.AMP.ENABLED", args.amp, "MODEL.CHANNELS_LAST", "True",
        "DATALOADER.CACHE_IMAGES", "True", "DATALOADER.NUM_WORKERS", "-1",
    ])  # fmt: skip
    cfg.freeze()
    seed_all_rng(args.seed)
    t0 = time.perf_counter()
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    res = trainer.last_eval_results
    out = {
        "arch": args.config, "amp": args.amp, "seed": args.seed, "iters": args.iters,
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
