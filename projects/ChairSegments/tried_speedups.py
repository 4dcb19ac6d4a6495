#!/usr/bin/env python
"""Speed-ups tried on top of bf16 + channels-last, measured before adopting them (README "Speed").

(1) ``torch.compile`` of the network (backbone + head) for the training step: the time of the
    first compiled step (compilation) against the steady-state gain per step;
(2) folding BatchNorm into the preceding convolution at inference (conv+BN fused, the ReLU
    stays as it is): images/s and how far the logits move;
(3) Adam's step on the model's parameters (Detectron2's parameter groups, random gradients):
    PyTorch's per-tensor loop (its choice for CPU tensors, what ``build_optimizer`` gets), the
    multi-tensor ``foreach`` path and the ``fused`` kernel.

(1) and (2) on the bare network (``sem_seg_head.layers(backbone(x))``) of the U-Net config, eager and
variant interleaved in one process:

    python projects/ChairSegments/tried_speedups.py --width-scale 0.25 --size 64 --batch 10 --threads 1
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from detectron2.layers import Conv2d
from detectron2.solver.build import get_default_optimizer_params
from torch.nn.utils.fusion import fuse_conv_bn_eval

from chairseg.measure.timing import bare_network, time_interleaved
from semseg_heads.config import get_semseg_heads_cfg
from semseg_heads.engine import Trainer

REPO = Path(__file__).resolve().parents[2]


def fold_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """An eval-mode copy of ``model`` with each Detectron2 ``Conv2d``'s BatchNorm folded into it."""
    model = copy.deepcopy(model).eval()
    for mod in model.modules():
        if isinstance(mod, Conv2d) and isinstance(mod.norm, torch.nn.BatchNorm2d):
            fused = fuse_conv_bn_eval(copy.deepcopy(mod), mod.norm)
            mod.weight, mod.bias, mod.norm = fused.weight, fused.bias, None
    return model


def adam_steps(model: torch.nn.Module) -> dict:
    """(3): one Adam step each for PyTorch's three implementations, each on its own copy of
    ``model`` with the same random gradients."""
    fns = {}
    for impl, kw in (
        ("per_tensor", {"foreach": False}),
        ("foreach", {"foreach": True}),
        ("fused", {"fused": True}),
    ):
        m = copy.deepcopy(model)
        torch.manual_seed(1)
        for q in m.parameters():
            q.grad = torch.randn_like(q)
        opt = torch.optim.Adam(get_default_optimizer_params(m, base_lr=3e-3, weight_decay=0.0), lr=3e-3, **kw)
        fns[f"adam_step_{impl}"] = opt.step
    return fns


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config-file", default=str(REPO / "configs/ChairSegments/unet.yaml"))
    p.add_argument("--width-scale", type=float, default=0.25)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--iters", type=int, default=15)
    p.add_argument("--no-compile", action="store_true", help="skip (1), which compiles for minutes")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    opts = ["MODEL.DEVICE", "cpu", "MODEL.SEMSEG_HEADS.WIDTH_SCALE", str(args.width_scale),
            "MODEL.CHANNELS_LAST", "True"]  # fmt: skip
    cfg = get_semseg_heads_cfg(args.config_file, opts)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.randint(0, 2, (args.batch, args.size, args.size))

    def autocast() -> torch.autocast:
        return torch.autocast("cpu", dtype=torch.bfloat16)

    model = Trainer.build_model(cfg).eval()
    folded = fold_batchnorm(model)
    with torch.no_grad(), autocast():
        a, b = bare_network(model)(x).float(), bare_network(folded)(x).float()
    result: dict = {
        "setting": vars(args),
        "fold_max_abs_logit_diff": (a - b).abs().max().item(),
        "fold_argmax_agreement": (a.argmax(1) == b.argmax(1)).float().mean().item(),
    }

    def infer(m: torch.nn.Module):
        net = bare_network(m)

        def run() -> None:
            with torch.no_grad(), autocast():
                net(x)

        return run

    fns = {"infer_bf16_cl": infer(model), "infer_bf16_cl_bn_folded": infer(folded)}
    fns.update(adam_steps(Trainer.build_model(cfg).train()))
    if not args.no_compile:
        eager = Trainer.build_model(cfg).train()
        compiled_model = copy.deepcopy(eager)

        def train_step(net, opt: torch.optim.Optimizer):
            def run() -> None:
                with autocast():
                    logits = net(x)
                loss = F.cross_entropy(logits.float(), y)
                opt.zero_grad()
                loss.backward()
                opt.step()

            return run

        compiled = torch.compile(bare_network(compiled_model))
        compiled_step = train_step(compiled, torch.optim.Adam(compiled_model.parameters(), 1e-3))
        t0 = time.perf_counter()
        compiled_step()
        result["compile_first_step_s"] = time.perf_counter() - t0
        fns["train_bf16_cl"] = train_step(bare_network(eager), torch.optim.Adam(eager.parameters(), 1e-3))
        fns["train_bf16_cl_compiled"] = compiled_step
    times = time_interleaved(fns, warmup=2, rounds=args.iters, per_round=1)
    result["median_ms"] = {k: 1000 * statistics.median(v) for k, v in times.items()}
    result["load_avg_1min"] = os.getloadavg()[0]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
