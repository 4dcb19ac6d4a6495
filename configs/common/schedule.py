"""Learning-rate multipliers of the yacs recipes as fvcore schedulers (Detectron2's
``WarmupParamScheduler``). Warm-up lengths are fractions of ``train.max_iter``, so these are
functions of it; a config that changes ``train.max_iter`` rebuilds its ``lr_multiplier``."""

from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import CosineParamScheduler, MultiStepParamScheduler


def multistep_with_warmup(
    max_iter: int,
    steps: tuple[int, ...] = (),
    gamma: float = 0.1,
    warmup_iters: int = 100,
    warmup_factor: float = 0.001,
):
    """``WarmupMultiStepLR`` as Detectron2's ``build_lr_scheduler`` makes it from SOLVER.STEPS,
    GAMMA, WARMUP_ITERS and WARMUP_FACTOR (fvcore's ConstantParamScheduler would refuse the
    last step's ``where == 1.0`` that Detectron2 v0.6's LRScheduler hook reaches)."""
    return L(WarmupParamScheduler)(
        scheduler=L(MultiStepParamScheduler)(
            values=[gamma**k for k in range(len(steps) + 1)], milestones=list(steps), num_updates=max_iter
        ),
        warmup_length=warmup_iters / max_iter,
        warmup_method="linear",
        warmup_factor=warmup_factor,
    )


def constant_with_warmup(max_iter: int, warmup_iters: int = 100, warmup_factor: float = 0.001):
    """``SOLVER.STEPS ()`` with Detectron2's default linear warm-up (Base-SemSeg.yaml)."""
    return multistep_with_warmup(max_iter, (), warmup_iters=warmup_iters, warmup_factor=warmup_factor)


def cosine_with_warmup(max_iter: int, warmup_iters: int = 200, warmup_factor: float = 0.01):
    """``SOLVER.LR_SCHEDULER_NAME WarmupCosineLR``: cosine decay to 0 at ``max_iter``."""
    return L(WarmupParamScheduler)(
        scheduler=L(CosineParamScheduler)(start_value=1.0, end_value=0.0),
        warmup_length=warmup_iters / max_iter,
        warmup_method="linear",
        warmup_factor=warmup_factor,
    )
