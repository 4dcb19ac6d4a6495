"""An exponential moving average of a model's weights, kept beside the training (``MODEL_EMA``).

Polyak averaging of the iterates (Polyak & Juditsky 1992), as EfficientNet and d2go train with
it: after every optimizer step ``ema = d * ema + (1 - d) * weights`` for every floating-point
entry of the model's state dict (parameters and BatchNorm's running statistics alike; integer
buffers such as ``num_batches_tracked`` are copied). ``d`` is ``MODEL_EMA.DECAY`` (window about
``1 / (1 - d)`` steps), lowered at the start to ``(1 + n) / (10 + n)`` after ``n`` updates so the
average is not dominated by the first weights.

``EMAHook`` updates it after each step; the ``Trainer`` evaluates with the averaged weights when
``MODEL_EMA.ENABLED`` and saves them in every checkpoint under ``"model_ema"`` (a resumed run
continues its average). Loading such a checkpoint for inference with ``MODEL_EMA.ENABLED``
(``SafeDetectionCheckpointer.for_inference``: eval-only, ``Predictor``, export) uses
the averaged weights.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from detectron2.engine import HookBase
from torch import nn
from torch.nn.parallel import DistributedDataParallel

__all__ = ["EMAHook", "ModelEMA"]

#: The checkpoint key of the averaged weights.
CHECKPOINT_KEY = "model_ema"


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


class ModelEMA:
    """The moving average of ``model``'s state dict (``decay`` in [0, 1))."""

    def __init__(self, model: nn.Module, decay: float = 0.999):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"MODEL_EMA.DECAY must be in [0, 1), got {decay!r}")
        self.decay = float(decay)
        self.num_updates = 0
        self.state: dict[str, torch.Tensor] = {}
        self.reset(model)

    def reset(self, model: nn.Module) -> None:
        """Start the average again from ``model``'s current weights."""
        # clone() keeps each tensor's memory format, so channels-last weights stay NHWC.
        self.state = {k: v.detach().clone() for k, v in _unwrap(model).state_dict().items()}
        self.num_updates = 0

    def current_decay(self) -> float:
        return min(self.decay, (1.0 + self.num_updates) / (10.0 + self.num_updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model``'s current weights by one step."""
        d = self.current_decay()
        current = _unwrap(model).state_dict()
        if current.keys() != self.state.keys():
            raise KeyError(
                "the model's state dict no longer has the entries the moving average was built "
                f"from (missing: {sorted(self.state.keys() - current.keys())[:5]}, new: "
                f"{sorted(current.keys() - self.state.keys())[:5]})"
            )
        floats_ema, floats_now = [], []
        for k, v in current.items():
            e = self.state[k]
            if e.is_floating_point():
                floats_ema.append(e)
                floats_now.append(v.detach().to(e.dtype))
            else:
                e.copy_(v)
        if floats_ema:
            torch._foreach_lerp_(floats_ema, floats_now, 1.0 - d)
        self.num_updates += 1

    @contextlib.contextmanager
    def applied_to(self, model: nn.Module) -> Iterator[nn.Module]:
        """Run a block with ``model`` holding the averaged weights; its own are put back after."""
        inner = _unwrap(model)
        own = {k: v.detach().clone() for k, v in inner.state_dict().items()}
        inner.load_state_dict(self.state)
        try:
            yield model
        finally:
            inner.load_state_dict(own)

    # Checkpointable (fvcore's Checkpointer saves and loads it under CHECKPOINT_KEY).
    def state_dict(self) -> dict[str, Any]:
        return {"state": self.state, "num_updates": self.num_updates, "decay": self.decay}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = state_dict["state"]
        if state.keys() != self.state.keys():
            raise KeyError(
                f"the checkpoint's '{CHECKPOINT_KEY}' was saved from another model: its entries "
                f"differ from this model's (e.g. {sorted(state.keys() ^ self.state.keys())[:5]})"
            )
        for k, v in state.items():
            self.state[k].copy_(v)
        self.num_updates = int(state_dict["num_updates"])


class EMAHook(HookBase):
    """Updates ``ema`` from the trainer's model after each step.

    At the start of training the average restarts from the model's weights unless it was
    loaded from a checkpoint (a resumed run): it was built before ``MODEL.WEIGHTS`` loaded.
    """

    def __init__(self, ema: ModelEMA):
        self.ema = ema

    def before_train(self) -> None:
        if self.ema.num_updates == 0:
            self.ema.reset(self.trainer.model)

    def after_step(self) -> None:
        self.ema.update(self.trainer.model)
