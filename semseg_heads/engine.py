"""``Trainer``: Detectron2's ``DefaultTrainer`` with semseg_heads' evaluators and safe checkpoints.

What it changes and why:

* ``build_evaluator`` follows the dataset's ``evaluator_type``: ``"sem_seg"`` gets
  ``SemSegEvaluator`` + ``ChairSegmentsEvaluator``; ``"coco"`` gets ``COCOEvaluator`` (bbox and
  segm AP; its fast C++ path only when Detectron2's compiled ops are present) +
  ``ChairSegmentsInstanceEvaluator``. The paper's metrics are switched by
  ``DATASETS.CHAIR_SEGMENTS.PAPER_METRICS``.
* ``build_optimizer`` honours ``SOLVER.OPTIMIZER`` ("SGD", "ADAM", "ADAMW") when the config
  has it: the Chair Segments reference trains U-Net with Adam.
* Checkpoints load through ``SafeDetectionCheckpointer``, and the optimizer state is saved
  with them (v0.6's ``DefaultTrainer`` saves only the iteration and the scheduler), so a
  resumed Adam run continues with its moments.
* ``SOLVER.LOG_PERIOD`` sets how often metrics are written (``metrics.json``).
* Mixed precision and speed (``semseg_heads.amp``, ``semseg_heads.data.cache``):
  ``SOLVER.AMP.ENABLED`` installs ``MixedPrecisionTrainer`` (bf16 on the CPU, fp16/bf16 on
  CUDA) in place of Detectron2's CUDA-only ``AMPTrainer`` and runs evaluation and ``Predictor``
  under the same autocast; ``MODEL.CHANNELS_LAST`` builds the model NHWC;
  ``DATALOADER.CACHE_IMAGES`` trains from decoded images kept in memory;
  ``DATALOADER.NUM_WORKERS -1`` picks the worker count for the machine.

Config loading (``get_semseg_heads_cfg``, ``model_zoo:`` bases) lives in ``semseg_heads.config``.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections import OrderedDict
from typing import Any

import detectron2.data.transforms as T
import torch
from detectron2.config import CfgNode
from detectron2.data import (
    DatasetMapper,
    MetadataCatalog,
    build_detection_test_loader,
    build_detection_train_loader,
)
from detectron2.engine import DefaultPredictor, DefaultTrainer, hooks
from detectron2.evaluation import COCOEvaluator, DatasetEvaluator, DatasetEvaluators, SemSegEvaluator
from detectron2.modeling import build_model
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping

from semseg_heads.amp import (
    AutocastInference,
    MixedPrecisionTrainer,
    amp_settings,
    apply_channels_last,
    outputs_to_float32,
)
from semseg_heads.checkpoint import SafeDetectionCheckpointer
from semseg_heads.compat import compiled_ops_available
from semseg_heads.data.cache import CachedDatasetMapper, resolve_num_workers, train_dataset_dicts
from semseg_heads.evaluation import ChairSegmentsEvaluator, ChairSegmentsInstanceEvaluator

__all__ = [
    "Trainer",
    "Predictor",
    "build_evaluator",
    "build_optimizer",
]

logger = logging.getLogger(__name__)

_OPTIMIZERS = {"ADAM": torch.optim.Adam, "ADAMW": torch.optim.AdamW}

def build_evaluator(cfg: CfgNode, dataset_name: str, output_folder: str | None = None) -> DatasetEvaluator:
    """The evaluators for ``dataset_name``, chosen by its metadata's ``evaluator_type``."""
    if output_folder is None:
        output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
    meta = MetadataCatalog.get(dataset_name)
    evaluator_type = meta.get("evaluator_type", None)
    paper_metrics = cfg.DATASETS.CHAIR_SEGMENTS.PAPER_METRICS
    if evaluator_type == "sem_seg":
        evaluators = [SemSegEvaluator(dataset_name, distributed=True, output_dir=output_folder)]
        if paper_metrics:
            evaluators.append(ChairSegmentsEvaluator(dataset_name, output_dir=output_folder))
    elif evaluator_type == "coco":
        tasks = ("bbox", "segm") if cfg.MODEL.MASK_ON else ("bbox",)
        evaluators = [
            COCOEvaluator(
                dataset_name,
                tasks=tasks,
                distributed=True,
                output_dir=output_folder,
                use_fast_impl=compiled_ops_available(),
            )
        ]
        if paper_metrics and cfg.MODEL.MASK_ON:
            evaluators.append(
                ChairSegmentsInstanceEvaluator(
                    dataset_name,
                    output_dir=output_folder,
                    score_threshold=cfg.DATASETS.CHAIR_SEGMENTS.INSTANCE_SCORE_THRESH,
                )
            )
    else:
        raise ValueError(
            f"dataset '{dataset_name}' has evaluator_type {evaluator_type!r}; semseg_heads' Trainer "
            "evaluates 'sem_seg' (semantic) and 'coco' (instance) datasets. Set the dataset's "
            "MetadataCatalog evaluator_type to one of them."
        )
    return evaluators[0] if len(evaluators) == 1 else DatasetEvaluators(evaluators)


def build_optimizer(cfg: CfgNode, model: torch.nn.Module) -> torch.optim.Optimizer:
    """``SOLVER.OPTIMIZER`` (default "SGD", Detectron2's own) with Detectron2's parameter groups
    (weight decay / lr factors) and gradient clipping."""
    name = str(cfg.SOLVER.get("OPTIMIZER", "SGD")).upper()
    if name == "SGD":
        return DefaultTrainer.build_optimizer(cfg, model)
    if name not in _OPTIMIZERS:
        raise ValueError(
            f"SOLVER.OPTIMIZER is {cfg.SOLVER.OPTIMIZER!r}; expected one of 'SGD', 'ADAM', 'ADAMW'"
        )
    params = get_default_optimizer_params(
        model,
        base_lr=cfg.SOLVER.BASE_LR,
        weight_decay=cfg.SOLVER.WEIGHT_DECAY,
        weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
        bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR,
        weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS,
    )
    return maybe_add_gradient_clipping(cfg, _OPTIMIZERS[name])(params, lr=cfg.SOLVER.BASE_LR)


def _with_workers(cfg: CfgNode, num_workers: int) -> CfgNode:
    if num_workers == cfg.DATALOADER.NUM_WORKERS:
        return cfg
    cfg = cfg.clone()
    cfg.defrost()
    cfg.DATALOADER.NUM_WORKERS = num_workers
    return cfg


class Trainer(DefaultTrainer):
    """``DefaultTrainer`` for semseg_heads models and Detectron2's own (see the module doc)."""

    def __init__(self, cfg: CfgNode):
        amp = amp_settings(cfg)  # validates SOLVER.AMP before anything is built
        base = cfg
        if cfg.SOLVER.AMP.ENABLED:
            # Detectron2 would build its CUDA-float16 AMPTrainer; build the plain one, then
            # give it the mixed-precision step below.
            base = cfg.clone()
            base.defrost()
            base.SOLVER.AMP.ENABLED = False
        super().__init__(base)
        if self.cfg.SOLVER.AMP.ENABLED != cfg.SOLVER.AMP.ENABLED:
            frozen = self.cfg.is_frozen()
            self.cfg.defrost()
            self.cfg.SOLVER.AMP.ENABLED = cfg.SOLVER.AMP.ENABLED
            if frozen:
                self.cfg.freeze()
        if amp.enabled:
            self._trainer = MixedPrecisionTrainer.from_trainer(self._trainer, amp)
            logger.info(f"Mixed precision: {amp.name} autocast on {amp.device_type}"
                        + (" with a GradScaler" if amp.use_grad_scaler else ""))

    def build_hooks(self) -> list[hooks.HookBase]:
        # DefaultTrainer.__init__ made a plain DetectionCheckpointer just before calling this;
        # replace it here, before the PeriodicCheckpointer hook captures it.
        self.checkpointer = SafeDetectionCheckpointer(
            self.model, self.cfg.OUTPUT_DIR, trainer=weakref.proxy(self)
        )
        ret = super().build_hooks()
        for h in ret:
            if isinstance(h, hooks.PeriodicWriter):
                h._period = self.cfg.SOLVER.LOG_PERIOD  # DefaultTrainer hard-codes 20
        return ret

    def state_dict(self) -> dict[str, Any]:
        ret = super().state_dict()
        if "_trainer" not in ret:  # detectron2 v0.6 does not save the optimizer; later ones do
            ret["optimizer"] = self.optimizer.state_dict()
            # ... nor the grad scaler (main saves it inside "_trainer")
            if isinstance(self._trainer, MixedPrecisionTrainer) and self._trainer.amp.use_grad_scaler:
                ret["grad_scaler"] = self._trainer.grad_scaler.state_dict()
        return ret

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        if "optimizer" in state_dict:
            self.optimizer.load_state_dict(state_dict["optimizer"])
        elif "_trainer" not in state_dict:
            logger.warning("The checkpoint has no optimizer state; the optimizer starts afresh.")
        if "_trainer" not in state_dict and isinstance(self._trainer, MixedPrecisionTrainer):
            self._trainer.load_grad_scaler(state_dict)  # v0.6 layout; main's loads via _trainer

    @property
    def last_eval_results(self) -> OrderedDict | None:
        """The results of the latest evaluation during training (None before any)."""
        return getattr(self, "_last_eval_results", None)

    @classmethod
    def build_model(cls, cfg: CfgNode) -> torch.nn.Module:
        # Before the optimizer and DDP see the parameters: NHWC weights stay NHWC from here.
        return apply_channels_last(super().build_model(cfg), cfg)

    @classmethod
    def build_optimizer(cls, cfg: CfgNode, model: torch.nn.Module) -> torch.optim.Optimizer:
        return build_optimizer(cfg, model)

    @classmethod
    def build_train_loader(cls, cfg: CfgNode):
        # Detectron2's DatasetMapper: resize by INPUT.MIN_SIZE_TRAIN (our configs keep the
        # dataset's resolution; Mask R-CNN's upscales) and random flips, applied to image,
        # label map and instance masks alike; with DATALOADER.CACHE_IMAGES the same mapper
        # reads decoded images from memory.
        cached = bool(cfg.DATALOADER.get("CACHE_IMAGES", False))
        cfg = _with_workers(cfg, resolve_num_workers(cfg, cached))
        if not cached:
            return build_detection_train_loader(cfg, mapper=DatasetMapper(cfg, is_train=True))
        records = train_dataset_dicts(cfg)
        mapper = CachedDatasetMapper(cfg, records, is_train=True)
        return build_detection_train_loader(cfg, mapper=mapper, dataset=records)

    @classmethod
    def build_test_loader(cls, cfg: CfgNode, dataset_name: str):
        cfg = _with_workers(cfg, resolve_num_workers(cfg, cached=False))
        return build_detection_test_loader(cfg, dataset_name, mapper=DatasetMapper(cfg, is_train=False))

    @classmethod
    def test(cls, cfg: CfgNode, model: torch.nn.Module, evaluators: Any = None) -> OrderedDict:
        """Detectron2's evaluation, under ``SOLVER.AMP``'s autocast when it is enabled (outputs
        cast to float32 before the evaluators' argmax)."""
        amp = amp_settings(cfg)
        if amp.enabled:
            model = AutocastInference(model, amp)
        return super().test(cfg, model, evaluators)

    @classmethod
    def build_evaluator(
        cls, cfg: CfgNode, dataset_name: str, output_folder: str | None = None
    ) -> DatasetEvaluator:
        return build_evaluator(cfg, dataset_name, output_folder)


class Predictor(DefaultPredictor):
    """Detectron2's ``DefaultPredictor`` (one BGR image in, the model's output dict out: resize
    by ``INPUT.MIN_SIZE_TEST``, ``INPUT.FORMAT`` conversion) that loads ``MODEL.WEIGHTS``
    through ``SafeDetectionCheckpointer``."""

    def __init__(self, cfg: CfgNode):
        # DefaultPredictor.__init__ would load the weights with the plain checkpointer; this
        # sets up the same attributes that its __call__ uses.
        self.cfg = cfg.clone()
        self.model = apply_channels_last(build_model(self.cfg), self.cfg)
        self.model.eval()
        self.amp = amp_settings(self.cfg)
        if len(cfg.DATASETS.TEST):
            self.metadata = MetadataCatalog.get(cfg.DATASETS.TEST[0])
        SafeDetectionCheckpointer(self.model).load(cfg.MODEL.WEIGHTS)
        self.aug = T.ResizeShortestEdge(
            [cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST], cfg.INPUT.MAX_SIZE_TEST
        )
        self.input_format = cfg.INPUT.FORMAT
        if self.input_format not in ("RGB", "BGR"):
            raise ValueError(f"INPUT.FORMAT must be 'RGB' or 'BGR', got {self.input_format!r}")

    def __call__(self, original_image: Any) -> dict[str, Any]:
        """``DefaultPredictor.__call__`` under ``SOLVER.AMP``'s autocast; outputs in float32."""
        with self.amp.autocast():
            out = super().__call__(original_image)
        return outputs_to_float32(out)
