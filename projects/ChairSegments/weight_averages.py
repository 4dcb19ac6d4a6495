#!/usr/bin/env python
"""Averages of the weights compared at a budget's end (issue 18, RECIPES.md section 5r).

Trains a recipe through semseg_heads' ``Trainer`` as ``tools/train_net.py`` does (the same
seed gives the same run, its own evaluations included) and keeps beside it further averages of
the weights, each updated after every optimizer step:

- ``ema:D``: an exponential moving average with decay D, bias-corrected as Adam's moments
  (Kingma & Ba 2015, Sec. 3): the sum of ``(1 - D) * D**(n - t) * w_t`` over the steps so far,
  divided by the sum of those weights. It needs no start-up ramp (``MODEL_EMA``'s
  ``(1 + n) / (10 + n)``, which sets the decay for any D >= 0.9985 up to 6,000 steps), so a
  long window keeps its length from the start and the initial weights carry no extra weight.
- ``tail:K``: the plain mean of the weights after every step from iteration K on (the average
  of stochastic weight averaging, Izmailov et al. 2018, without its cyclic learning rate).

Floating-point entries of the state dict are averaged (BatchNorm's running statistics too, as
``MODEL_EMA`` does); integer ones are the model's. At each ``--save-at`` iteration every average
is written as ``<OUTPUT_DIR>/averages/<name>_<iteration>.pth`` (a checkpoint that
``tools/train_net.py --eval-only MODEL.WEIGHTS`` reads, with MODEL_EMA off); after training each
is evaluated on DATASETS.TEST, the results in ``<OUTPUT_DIR>/averages/results.json``. The
averages are saved with the run's checkpoints, so a killed run resumes (``--resume``) with
nothing lost.

    DETECTRON2_DATASETS=/work/data18 OMP_NUM_THREADS=1 python projects/ChairSegments/weight_averages.py \\
        --resume --averages ema:0.999 ema:0.9995 tail:4000 --save-at 5000 5500 6000 \\
        --config-file configs/ChairSegments/recipes/unet_border_lovasz_ema.yaml \\
        MODEL.DEVICE cpu SEED 1 SOLVER.MAX_ITER 6000 SOLVER.LR_SCHEDULE_ITERS 8000 \\
        OUTPUT_DIR /work/runs/avg_s1
"""

from __future__ import annotations

import json
import logging
import sys
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from detectron2.config import CfgNode
from detectron2.engine import HookBase, default_argument_parser, default_setup, hooks
from detectron2.utils.logger import setup_logger
from torch import nn

import semseg_heads  # noqa: F401  (registers models and datasets)
from semseg_heads.config import get_semseg_heads_cfg
from semseg_heads.engine import Trainer

logger = logging.getLogger("semseg_heads")

#: The run checkpoint's key for the averages.
CHECKPOINT_KEY = "weight_averages"


@dataclass(frozen=True)
class AverageSpec:
    """``ema:D`` (decay D in (0, 1)) or ``tail:K`` (the mean from iteration K on)."""

    kind: str
    value: float

    @classmethod
    def parse(cls, text: str) -> AverageSpec:
        kind, sep, value = text.partition(":")
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if sep and kind == "ema" and 0.0 < number < 1.0:
            return cls("ema", number)
        if sep and kind == "tail" and number >= 0 and number == int(number):
            return cls("tail", int(number))
        raise ValueError(
            f"--averages '{text}': expected ema:D with 0 < D < 1 or tail:K with an iteration K >= 0"
        )

    @property
    def name(self) -> str:
        return f"{self.kind}{self.value:g}"


class WeightAverages:
    """Running averages of a model's state dict, one per ``AverageSpec``.

    Each is kept as the average itself, moved towards the current weights by ``a / c`` after a
    step, where ``c`` is the running sum of the step weights (``c = D * c + (1 - D)`` for an
    EMA, ``c = c + 1`` for a tail mean), which is the bias-corrected form of both.
    """

    def __init__(self, model: nn.Module, specs: list[AverageSpec]):
        state = model.state_dict()
        self.specs = list(specs)
        self.avg = {
            s.name: {k: v.detach().clone() for k, v in state.items() if v.is_floating_point()} for s in specs
        }
        self.weight = {s.name: 0.0 for s in specs}

    @torch.no_grad()
    def update(self, model: nn.Module, iteration: int) -> None:
        """Add the weights after ``iteration``'s step to every average that includes it."""
        now = [v.detach() for v in model.state_dict().values() if v.is_floating_point()]
        for s in self.specs:
            if s.kind == "tail" and iteration < s.value:
                continue
            decay, step = (s.value, 1.0 - s.value) if s.kind == "ema" else (1.0, 1.0)
            self.weight[s.name] = decay * self.weight[s.name] + step
            torch._foreach_lerp_(list(self.avg[s.name].values()), now, step / self.weight[s.name])

    def averaged_state(self, model: nn.Module, name: str) -> dict[str, torch.Tensor]:
        """The model's state dict with the average ``name`` in its floating-point entries."""
        if self.weight[name] == 0.0:
            raise ValueError(f"average '{name}' holds no step yet")
        return {k: self.avg[name].get(k, v).detach().clone() for k, v in model.state_dict().items()}

    # Checkpointable: saved with the run's checkpoints, restored on --resume.
    def state_dict(self) -> dict[str, Any]:
        return {"avg": self.avg, "weight": self.weight}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if set(state_dict["avg"]) != set(self.avg):
            raise KeyError(
                f"the checkpoint's '{CHECKPOINT_KEY}' holds the averages {sorted(state_dict['avg'])}, "
                f"this run asks for {sorted(self.avg)}: resume with the same --averages"
            )
        for name, entries in state_dict["avg"].items():
            for k, v in entries.items():
                self.avg[name][k].copy_(v)
        self.weight = {k: float(v) for k, v in state_dict["weight"].items()}


class AveragesHook(HookBase):
    """Updates the averages after each step and saves them at the ``save_at`` iterations."""

    def __init__(self, averages: WeightAverages, save_at: list[int], folder: Path):
        self.averages, self.save_at, self.folder = averages, set(save_at), folder

    def after_step(self) -> None:
        it = self.trainer.iter
        self.averages.update(self.trainer.model, it)
        if it + 1 in self.save_at:  # Detectron2's evaluation "at N" runs after iteration N - 1
            self.folder.mkdir(parents=True, exist_ok=True)
            for s in self.averages.specs:
                if self.averages.weight[s.name] > 0:
                    state = self.averages.averaged_state(self.trainer.model, s.name)
                    torch.save({"model": state, "iteration": it}, self.folder / f"{s.name}_{it + 1}.pth")


class AveragingTrainer(Trainer):
    """semseg_heads' ``Trainer`` with ``WeightAverages`` beside the run."""

    def __init__(self, cfg: CfgNode, specs: list[AverageSpec], save_at: list[int]):
        # Set before Trainer.__init__, which calls build_hooks.
        self.specs, self.save_at = list(specs), list(save_at)
        super().__init__(cfg)

    def build_hooks(self) -> list[hooks.HookBase]:
        ret = super().build_hooks()  # builds self.checkpointer
        self.averages = WeightAverages(self.model, self.specs)
        self.checkpointer.add_checkpointable(CHECKPOINT_KEY, self.averages)
        # Before the checkpoint hook, so a checkpoint after step N holds step N in every average.
        at = next(i for i, h in enumerate(ret) if isinstance(h, hooks.LRScheduler)) + 1
        ret.insert(at, AveragesHook(self.averages, self.save_at, Path(self.cfg.OUTPUT_DIR) / "averages"))
        return ret


def evaluate_saved(cfg: CfgNode, folder: Path) -> dict[str, Any]:
    """Every ``<name>_<iteration>.pth`` in ``folder`` evaluated on DATASETS.TEST."""
    results: dict[str, Any] = {}
    for path in sorted(folder.glob("*.pth")):
        model = Trainer.build_model(cfg)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["model"])
        res = Trainer.test(cfg, model)
        results[path.stem] = json.loads(json.dumps(res, default=float))
        logger.info(f"{path.name}: {dict(res)}")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = default_argument_parser()
    parser.add_argument(
        "--averages", nargs="+", default=[], help="ema:D and/or tail:K, e.g. ema:0.999 tail:4000"
    )
    parser.add_argument(
        "--save-at", nargs="+", type=int, default=[], help="iterations (as evaluations count them)"
    )
    args = parser.parse_args(argv)
    try:
        specs = [AverageSpec.parse(a) for a in args.averages]
    except ValueError as e:
        parser.error(str(e))
    if not args.eval_only and not (specs and args.save_at):
        parser.error("training needs --averages and --save-at (--eval-only evaluates the saved ones)")
    if args.num_gpus != 1:
        parser.error("one process only")
    cfg = get_semseg_heads_cfg(args.config_file, list(args.opts))
    cfg.freeze()
    default_setup(cfg, args)
    setup_logger(cfg.OUTPUT_DIR, name="semseg_heads")
    folder = Path(cfg.OUTPUT_DIR) / "averages"
    if not args.eval_only:
        trainer = AveragingTrainer(cfg, specs, args.save_at)
        trainer.resume_or_load(resume=args.resume)
        trainer.train()
    results = evaluate_saved(cfg, folder)
    (folder / "results.json").write_text(json.dumps(OrderedDict(results), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
