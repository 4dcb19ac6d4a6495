"""The body of test_ddp: one process of a 2-process gloo group training every config a little."""

from __future__ import annotations

import json
import math
import os

import torch
import torch.distributed as dist
from detectron2.engine import SimpleTrainer, create_ddp_model
from detectron2.modeling import build_model
from detectron2.solver import build_optimizer
from detectron2.utils.events import EventStorage
from modeling_utils import SMALL_WIDTH, model_cfg, rectangles_batch

STEPS = 2  # DDP reports parameters left out of one step's backward when the next step starts


def run(rank: int, world_size: int, init_file: str, variants: list, out_dir: str) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        report = {}
        for name, opts in variants:
            cfg = model_cfg(name, SMALL_WIDTH, *opts)
            cfg.SOLVER.BASE_LR = 0.01
            torch.manual_seed(rank)  # different initial weights: DDP must broadcast rank 0's
            model = build_model(cfg)
            # As Detectron2's DefaultTrainer wraps the model; device_ids=None for a CPU module.
            ddp = create_ddp_model(model, broadcast_buffers=False, device_ids=None)
            assert isinstance(ddp, torch.nn.parallel.DistributedDataParallel)
            assert not ddp.find_unused_parameters
            batch = rectangles_batch(2, 64, 64, seed=rank)
            trainer = SimpleTrainer(ddp, [batch] * STEPS, build_optimizer(cfg, model))
            losses = []
            with EventStorage(0) as trainer.storage:
                for _ in range(STEPS):
                    trainer.run_step()  # raises FloatingPointError on a non-finite loss
                    if rank == 0:  # Detectron2 gathers every process's losses on the main one
                        losses.append(trainer.storage.latest()["total_loss"][0])
            # Gradients were averaged across processes, so the weights agree after the steps.
            checksum = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum()
            gathered = [torch.zeros_like(checksum) for _ in range(world_size)]
            dist.all_gather(gathered, checksum)
            report[f"{name} {' '.join(map(str, opts))}".strip()] = {
                "losses": losses,
                "finite": rank > 0 or (len(losses) == STEPS and all(math.isfinite(x) for x in losses)),
                "in_sync": all(torch.allclose(g, gathered[0], rtol=1e-6) for g in gathered),
            }
        if rank == 0:
            with open(os.path.join(out_dir, "ddp_report.json"), "w") as f:
                json.dump(report, f, indent=1)
        # Both ranks leave together: tearing gloo down while the other rank still talks to it
        # was seen to abort a process at exit (Detectron2-main environment, once in a full run).
        dist.barrier()
    finally:
        dist.destroy_process_group()
