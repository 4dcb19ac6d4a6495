"""Mixed precision with Detectron2's keys, on the CPU (bfloat16) and on CUDA (float16 or bfloat16).

Detectron2's ``AMPTrainer`` (v0.6 and current main) runs ``torch.cuda.amp`` only: CUDA, float16.
This module keeps its keys and extends them:

* ``SOLVER.AMP.ENABLED``: train under ``torch.autocast`` and, the same switch, run inference
  (evaluation, ``Predictor``, ``tools/demo.py``, the study's timing) under it. One switch, so
  a model is evaluated in the precision it was trained in; evaluate an fp32-trained model in
  bf16 with ``SOLVER.AMP.ENABLED True`` on the command line of ``--eval-only``.
* ``SOLVER.AMP.PRECISION``: ``""`` (per device: ``bfloat16`` on the CPU, ``float16`` on CUDA,
  as each device's fast path), ``"bfloat16"`` or ``"float16"`` (CUDA only). float16 trains with
  a ``GradScaler`` (its range needs loss scaling); bfloat16 has float32's range and needs none.
* A CPU without native bf16 (AVX-512 BF16 or AMX) would emulate it, slower than fp32: the run
  logs one line and stays in fp32. A CUDA device without bf16 does the same for bfloat16.

Losses are computed in float32 (``SemSegLoss`` leaves autocast) and model outputs are cast to
float32 before any softmax / argmax of post-processing or evaluation (``outputs_to_float32``).

``MixedPrecisionTrainer`` is the ``SimpleTrainer`` step under autocast (plus the scaler for
float16), built like any ``SimpleTrainer`` from a model, a loader and an optimizer; the
project's ``Trainer`` runs its steps with it. Its grad-scaler state is checkpointed on both
Detectron2 versions (main saves the inner trainer's state dict, v0.6 the trainer's own; see
``semseg_heads.engine.Trainer``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import torch
from detectron2.config import CfgNode
from detectron2.engine import SimpleTrainer
from detectron2.structures import Instances
from detectron2.utils.events import get_event_storage

from semseg_heads.data.prefetch import request_next_batch

__all__ = [
    "AmpSettings",
    "MixedPrecisionTrainer",
    "AutocastInference",
    "amp_settings",
    "apply_channels_last",
    "cpu_has_native_bf16",
    "outputs_to_float32",
]

logger = logging.getLogger(__name__)

_PRECISIONS = {"bfloat16": torch.bfloat16, "float16": torch.float16}
_DEFAULT_PRECISION = {"cpu": "bfloat16", "cuda": "float16"}
# Lines already logged, so that each fallback is said once per process, not per Predictor.
_logged: set[str] = set()


def _log_once(msg: str) -> None:
    if msg not in _logged:
        _logged.add(msg)
        logger.warning(msg)


def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bfloat16 natively (AVX-512 BF16 or AMX), where oneDNN's bf16
    convolutions beat fp32; elsewhere PyTorch emulates bf16 and it is slower than fp32."""
    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    if any(hasattr(cpu, c) for c in checks):
        return any(getattr(cpu, c, lambda: False)() for c in checks)
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())  # older torch: oneDNN's own check


@dataclass(frozen=True)
class AmpSettings:
    """What ``SOLVER.AMP`` resolves to on ``MODEL.DEVICE``: autocast on or off, its dtype, and
    whether gradients need a ``GradScaler`` (float16 only)."""

    enabled: bool
    device_type: str
    dtype: torch.dtype = torch.float32

    @property
    def use_grad_scaler(self) -> bool:
        return self.enabled and self.dtype == torch.float16

    @property
    def name(self) -> str:
        return str(self.dtype).replace("torch.", "") if self.enabled else "float32"

    def autocast(self) -> contextlib.AbstractContextManager:
        """``torch.autocast`` for these settings (a no-op context when disabled)."""
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A ``GradScaler``, disabled (a pass-through) unless float16 needs it."""
        return torch.amp.GradScaler(self.device_type, enabled=self.use_grad_scaler)


def amp_settings(cfg: CfgNode) -> AmpSettings:
    """Resolve ``SOLVER.AMP.ENABLED`` / ``SOLVER.AMP.PRECISION`` for ``MODEL.DEVICE``.

    Raises ``ValueError`` for a precision that is not one of ``""``, ``"bfloat16"``,
    ``"float16"``, or float16 on the CPU.
    """
    device_type = torch.device(cfg.MODEL.DEVICE).type
    precision = str(cfg.SOLVER.AMP.get("PRECISION", "")).strip().lower()
    if precision and precision not in _PRECISIONS:
        raise ValueError(
            f"SOLVER.AMP.PRECISION is {cfg.SOLVER.AMP.PRECISION!r}; expected '' (bfloat16 on the "
            "CPU, float16 on CUDA), 'bfloat16' or 'float16'"
        )
    if not cfg.SOLVER.AMP.ENABLED:
        return AmpSettings(False, device_type)
    if device_type not in _DEFAULT_PRECISION:
        _log_once(f"SOLVER.AMP.ENABLED: no mixed precision for device '{device_type}'; running float32")
        return AmpSettings(False, device_type)
    precision = precision or _DEFAULT_PRECISION[device_type]
    if device_type == "cpu" and precision == "float16":
        raise ValueError(
            "SOLVER.AMP.PRECISION 'float16' is for CUDA; on the CPU use 'bfloat16' (or '' for the "
            "per-device default)"
        )
    if device_type == "cpu" and not cpu_has_native_bf16():
        _log_once(
            "SOLVER.AMP.ENABLED: this CPU has no native bfloat16 (AVX-512 BF16 / AMX), where bf16 "
            "is slower than float32; running float32"
        )
        return AmpSettings(False, device_type)
    if device_type == "cuda" and precision == "bfloat16" and not torch.cuda.is_bf16_supported():
        _log_once("SOLVER.AMP.PRECISION 'bfloat16': this GPU has no bfloat16; running float32")
        return AmpSettings(False, device_type)
    return AmpSettings(True, device_type, _PRECISIONS[precision])


def outputs_to_float32(outputs: Any) -> Any:
    """Model outputs with every floating tensor in float32 (lists, tuples, dicts and
    ``Instances`` are walked), so evaluators and visualisers take softmax / argmax in fp32."""
    if isinstance(outputs, torch.Tensor):
        return outputs.float() if outputs.is_floating_point() else outputs
    if isinstance(outputs, dict):
        return {k: outputs_to_float32(v) for k, v in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(outputs_to_float32(v) for v in outputs)
    if isinstance(outputs, Instances):
        for k, v in outputs.get_fields().items():
            if isinstance(v, torch.Tensor):
                outputs.set(k, outputs_to_float32(v))
            elif isinstance(getattr(v, "tensor", None), torch.Tensor) and v.tensor.is_floating_point():
                outputs.set(k, type(v)(v.tensor.float()))  # Boxes, Keypoints: a new one, in float32
        return outputs
    return outputs


class AutocastInference(torch.nn.Module):
    """``model`` run under the settings' autocast, its outputs cast back to float32.

    Wraps the model handed to Detectron2's ``inference_on_dataset`` (which switches it to eval
    mode and back through this module's ``train``/``eval``).
    """

    def __init__(self, model: torch.nn.Module, amp: AmpSettings):
        super().__init__()
        self.model = model
        self.amp = amp

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with self.amp.autocast():
            out = self.model(*args, **kwargs)
        return outputs_to_float32(out)


def apply_channels_last(model: torch.nn.Module, cfg: CfgNode) -> torch.nn.Module:
    """``MODEL.CHANNELS_LAST``: the model's 4-D weights in NHWC order (in place).

    oneDNN's (CPU) and cuDNN's convolutions are faster on NHWC; a conv whose weight is NHWC
    returns NHWC activations, so the whole network runs channels-last without converting the
    input. Parameters stay the same tensors' values; checkpoints are unaffected.
    """
    if cfg.MODEL.get("CHANNELS_LAST", False):
        model.to(memory_format=torch.channels_last)
    return model


class MixedPrecisionTrainer(SimpleTrainer):
    """Detectron2's ``SimpleTrainer`` step under ``torch.autocast`` on any device.

    Like Detectron2's ``AMPTrainer`` but not CUDA/float16-only: the forward pass (and the loss
    sum) run under the settings' autocast, the backward outside it; float16 scales the loss
    with a ``GradScaler``. Works with the ``SimpleTrainer`` of Detectron2 v0.6 and of main
    (``zero_grad_before_forward``, ``after_backward``, ``async_write_metrics`` when present).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        data_loader: Any,
        optimizer: torch.optim.Optimizer,
        amp: AmpSettings,
        grad_scaler: torch.amp.GradScaler | None = None,
        **kwargs: Any,
    ):
        # kwargs: SimpleTrainer's options on Detectron2 main (gather_metric_period, ...).
        super().__init__(model, data_loader, optimizer, **kwargs)
        self.amp = amp
        self.grad_scaler = grad_scaler if grad_scaler is not None else amp.grad_scaler()

    def run_step(self) -> None:
        assert self.model.training, "[MixedPrecisionTrainer] model was changed to eval mode!"
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start

        zero_first = getattr(self, "zero_grad_before_forward", False)
        if zero_first:
            self.optimizer.zero_grad()
        with self.amp.autocast():
            loss_dict = self.model(data)
        if isinstance(loss_dict, torch.Tensor):
            losses = loss_dict.float()
            loss_dict = {"total_loss": loss_dict}
        else:
            losses = sum(v.float() for v in loss_dict.values())
        if not zero_first:
            self.optimizer.zero_grad()
        # DATALOADER.LOAD_DURING_BACKWARD: the next batch loads while backward holds no GIL.
        request_next_batch(self._data_loader_iter)
        self.grad_scaler.scale(losses).backward()
        if self.amp.use_grad_scaler:
            get_event_storage().put_scalar("grad_scaler", self.grad_scaler.get_scale(), smoothing_hint=False)
        if hasattr(self, "after_backward"):  # Detectron2 main's hook point
            self.after_backward()
        if getattr(self, "async_write_metrics", False):
            self.concurrent_executor.submit(self._write_metrics, loss_dict, data_time, iter=self.iter)
        else:
            self._write_metrics(loss_dict, data_time)
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()

    def state_dict(self) -> dict[str, Any]:
        ret = super().state_dict()
        if self.amp.use_grad_scaler:
            ret["grad_scaler"] = self.grad_scaler.state_dict()
        return ret

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.load_grad_scaler(state_dict)

    def load_grad_scaler(self, state_dict: dict[str, Any]) -> None:
        """Restore the scaler from ``state_dict["grad_scaler"]``; a float16 run resumed from a
        checkpoint without one (an fp32 / bf16 run) starts the scaler afresh and says so."""
        if not self.amp.use_grad_scaler:
            return
        if "grad_scaler" in state_dict:
            self.grad_scaler.load_state_dict(state_dict["grad_scaler"])
        else:
            logger.warning("The checkpoint has no grad-scaler state; the float16 loss scale starts afresh.")
