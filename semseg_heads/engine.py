"""``Trainer``: Detectron2's ``DefaultTrainer`` with semseg_heads' evaluators and safe checkpoints.

What it changes and why:

* ``build_evaluator`` follows the dataset's ``evaluator_type``: ``"sem_seg"`` gets
  ``SemSegEvaluator``, as ``PerImageIoUEvaluator`` (which adds the paper's per-image IoU/Dice)
  for datasets with the paper's metrics (metadata ``paper_metrics``, default: binary datasets);
  ``"coco"`` gets ``COCOEvaluator`` (bbox and segm AP; its fast C++ path only when Detectron2's
  compiled ops are present) and, for mask models on such datasets, the same
  ``PerImageIoUEvaluator`` through ``InstancesToSemSegEvaluator``.
* ``build_optimizer`` honours ``SOLVER.OPTIMIZER`` ("SGD", "ADAM", "ADAMW") when the config
  has it: the Chair Segments reference trains U-Net with Adam.
* ``build_lr_scheduler`` is Detectron2's over ``SOLVER.LR_SCHEDULE_ITERS`` iterations when it
  is set (a schedule cut at ``SOLVER.MAX_ITER``), else over ``SOLVER.MAX_ITER``.
* Checkpoints load through ``SafeDetectionCheckpointer``, and the optimizer state is saved
  with them (v0.6's ``DefaultTrainer`` saves only the iteration and the scheduler), so a
  resumed Adam run continues with its moments.
* ``SOLVER.LOG_PERIOD`` sets how often metrics are written (``metrics.json``; Detectron2: 20).
* ``TEST.AUG.ENABLED`` ends training with an evaluation with test-time augmentation, as
  Detectron2's ``tools/train_net.py`` does, its metrics written to ``metrics.json`` too.
* Mixed precision and speed (``semseg_heads.amp``, ``semseg_heads.data.cache``):
  ``SOLVER.AMP.ENABLED`` installs ``MixedPrecisionTrainer`` (bf16 on the CPU, fp16/bf16 on
  CUDA) in place of Detectron2's CUDA-only ``AMPTrainer`` and runs evaluation and ``Predictor``
  under the same autocast; ``MODEL.CHANNELS_LAST`` builds the model NHWC;
  ``DATALOADER.CACHE_IMAGES`` trains from decoded images kept in memory (by default when
  they fit ``DATALOADER.CACHE_MAX_MB``);
  ``DATALOADER.NUM_WORKERS -1`` picks the worker count for the machine.

Config loading (``get_semseg_heads_cfg``, ``model_zoo:`` bases) lives in ``semseg_heads.config``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import weakref
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.data import (
    DatasetCatalog,
    DatasetMapper,
    MetadataCatalog,
    build_detection_test_loader,
    build_detection_train_loader,
)
from detectron2.engine import DefaultPredictor, DefaultTrainer, TrainerBase, hooks
from detectron2.evaluation import (
    COCOEvaluator,
    DatasetEvaluator,
    DatasetEvaluators,
    SemSegEvaluator,
    verify_results,
)
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping
from detectron2.utils import comm
from torch.nn.parallel import DistributedDataParallel

from semseg_heads.amp import (
    AutocastInference,
    MixedPrecisionTrainer,
    amp_settings,
    apply_channels_last,
    outputs_to_float32,
)
from semseg_heads.checkpoint import SafeDetectionCheckpointer
from semseg_heads.compat import compiled_ops_available
from semseg_heads.config import save_run_config
from semseg_heads.data.cache import (
    CachedDatasetMapper,
    resolve_cache_images,
    resolve_num_workers,
    train_dataset_dicts,
)
from semseg_heads.data.prefetch import ThreadPrefetcher
from semseg_heads.evaluation import InstancesToSemSegEvaluator, PerImageIoUEvaluator
from semseg_heads.model_ema import CHECKPOINT_KEY as EMA_CHECKPOINT_KEY
from semseg_heads.model_ema import EMAHook, ModelEMA
from semseg_heads.modeling.segmentor import SemSegSegmentor
from semseg_heads.modeling.sliding_window import InferenceSettings, test_augmentations
from semseg_heads.modeling.test_time_augmentation import SemanticSegmentorWithTTA

__all__ = [
    "Trainer",
    "Predictor",
    "build_evaluator",
    "build_lr_scheduler",
    "build_optimizer",
]

logger = logging.getLogger(__name__)

_OPTIMIZERS = {"ADAM": torch.optim.Adam, "ADAMW": torch.optim.AdamW}


def paper_metrics(dataset_name: str) -> bool:
    """Whether a dataset is scored with the paper's per-image IoU/Dice: its metadata's
    ``paper_metrics``, by default True for two-class (binary) datasets."""
    meta = MetadataCatalog.get(dataset_name)
    classes = meta.get("stuff_classes", None)
    return bool(meta.get("paper_metrics", classes is not None and len(classes) == 2))


def build_evaluator(cfg: CfgNode, dataset_name: str, output_folder: str | None = None) -> DatasetEvaluator:
    """The evaluators for ``dataset_name``, chosen by its metadata's ``evaluator_type``."""
    if output_folder is None:
        output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
    meta = MetadataCatalog.get(dataset_name)
    evaluator_type = meta.get("evaluator_type", None)
    if evaluator_type == "sem_seg":
        if paper_metrics(dataset_name):
            return PerImageIoUEvaluator(dataset_name, output_dir=output_folder)
        return SemSegEvaluator(dataset_name, distributed=True, output_dir=output_folder)
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
        records = DatasetCatalog.get(dataset_name)
        with_label_maps = bool(records) and all("sem_seg_file_name" in r for r in records)
        if paper_metrics(dataset_name) and cfg.MODEL.MASK_ON and with_label_maps:
            # Instance models join the semantic table through their merged masks.
            semantic = PerImageIoUEvaluator(dataset_name, output_dir=output_folder)
            evaluators.append(InstancesToSemSegEvaluator(semantic, cfg.TEST.INSTANCE_SCORE_THRESH))
        elif paper_metrics(dataset_name) and cfg.MODEL.MASK_ON:
            logger.info(
                f"dataset '{dataset_name}': records have no 'sem_seg_file_name', so instance "
                "predictions get COCO AP only (no per-image IoU/Dice)"
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
    (weight decay / lr factors) and gradient clipping; ``SOLVER.FUSED`` picks PyTorch's fused
    Adam / AdamW kernel."""
    name = str(cfg.SOLVER.get("OPTIMIZER", "SGD")).upper()
    fused = bool(cfg.SOLVER.get("FUSED", False))
    if name == "SGD" and fused:
        raise ValueError("SOLVER.FUSED applies to SOLVER.OPTIMIZER 'Adam' and 'AdamW'; it is 'SGD'")
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
    # fused=None is PyTorch's own choice (its per-tensor loop on the CPU).
    optimizer = maybe_add_gradient_clipping(cfg, _OPTIMIZERS[name])
    return optimizer(params, lr=cfg.SOLVER.BASE_LR, fused=True if fused else None)


def build_lr_scheduler(
    cfg: CfgNode, optimizer: torch.optim.Optimizer
) -> torch.optim.lr_scheduler.LRScheduler:
    """Detectron2's scheduler (``SOLVER.LR_SCHEDULER_NAME``, its warm-up) built as if training
    ran ``SOLVER.LR_SCHEDULE_ITERS`` iterations; training still stops at ``SOLVER.MAX_ITER``, so
    the schedule is cut there. 0 (the default) is Detectron2's own schedule."""
    span = int(cfg.SOLVER.get("LR_SCHEDULE_ITERS", 0))
    if span == 0:
        return DefaultTrainer.build_lr_scheduler(cfg, optimizer)
    if span < cfg.SOLVER.MAX_ITER:
        raise ValueError(
            f"SOLVER.LR_SCHEDULE_ITERS is {span}: it must be 0 (the schedule spans SOLVER.MAX_ITER) "
            f"or at least SOLVER.MAX_ITER ({cfg.SOLVER.MAX_ITER}), as a schedule cannot end before training"
        )
    cfg = cfg.clone()
    cfg.defrost()
    cfg.SOLVER.MAX_ITER = span
    return DefaultTrainer.build_lr_scheduler(cfg, optimizer)


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
        #: The results of the latest evaluation during training, with the final ``TEST.AUG``
        #: evaluation's ``<task>_TTA`` entries beside them when it ran (None before any).
        self.last_eval_results: OrderedDict | None = None
        #: The training step when ``SOLVER.AMP`` resolves to autocast or
        #: ``DATALOADER.LOAD_DURING_BACKWARD`` is on (float32 then), else None (Detectron2's).
        self.mixed_precision: MixedPrecisionTrainer | None = None
        base = cfg
        if cfg.SOLVER.AMP.ENABLED:
            # Detectron2 would build its CUDA-float16 AMPTrainer; build the plain one, then
            # give it the mixed-precision step below.
            base = cfg.clone()
            base.defrost()
            base.SOLVER.AMP.ENABLED = False
        super().__init__(base)
        if self.cfg.SOLVER.AMP.ENABLED != cfg.SOLVER.AMP.ENABLED:
            self.cfg.defrost()
            self.cfg.SOLVER.AMP.ENABLED = cfg.SOLVER.AMP.ENABLED
            if cfg.is_frozen():
                self.cfg.freeze()
        if amp.enabled or cfg.DATALOADER.LOAD_DURING_BACKWARD:
            # DefaultTrainer picks its inner step itself (SimpleTrainer, or AMPTrainer: CUDA
            # float16 only) and has no hook for another; the mixed-precision step replaces it,
            # built from the trainer's public model, loader and optimizer. (The step it replaces
            # never ran: Detectron2 main starts a loader iterator at the first step; v0.6 at
            # construction, which with the default DATALOADER.ASPECT_RATIO_GROUPING is a
            # generator that has not started either.) In float32 the same step runs without
            # autocast, for DATALOADER.LOAD_DURING_BACKWARD's request before the backward pass.
            self.mixed_precision = MixedPrecisionTrainer(self.model, self.data_loader, self.optimizer, amp)
            self._trainer = self.mixed_precision
            if amp.enabled:
                logger.info(
                    f"Mixed precision: {amp.name} autocast on {amp.device_type}"
                    + (" with a GradScaler" if amp.use_grad_scaler else "")
                )
        if comm.is_main_process():
            # Every run folder carries its full config beside its checkpoints (the main job and
            # the study too, not only train_net's default_setup), with the classes' names, so
            # the deploy tools rebuild the same model (semseg_heads.config.config_for_weights).
            logger.info(f"Full config saved to {save_run_config(self.cfg)}")

    def build_hooks(self) -> list[hooks.HookBase]:
        # DefaultTrainer.__init__ made a plain DetectionCheckpointer just before calling this;
        # replace it here, before the PeriodicCheckpointer hook captures it.
        # MODEL_EMA: the moving average is saved with every checkpoint and restored on resume.
        self.model_ema = (
            ModelEMA(self.model, self.cfg.MODEL_EMA.DECAY) if self.cfg.MODEL_EMA.ENABLED else None
        )
        self.checkpointer = SafeDetectionCheckpointer(
            self.model,
            self.cfg.OUTPUT_DIR,
            allow_partial=self.cfg.MODEL.WEIGHTS_ALLOW_PARTIAL,
            trainer=weakref.proxy(self),
            **({EMA_CHECKPOINT_KEY: self.model_ema} if self.model_ema is not None else {}),
        )
        # DefaultTrainer writes metrics every 20 iterations, fixed; its writer hook is replaced by
        # one with SOLVER.LOG_PERIOD around the same writers (build_writers below builds once).
        # Its evaluation hook keeps the results where only DefaultTrainer reads them; the same
        # hook, in the same place, keeps them in ``last_eval_results``.
        # Its checkpoint hook keeps every periodic checkpoint; SOLVER.CHECKPOINT_MAX_TO_KEEP
        # bounds how many (a long study otherwise fills the disk with them).
        ret = [
            hooks.PeriodicWriter(self.build_writers(), period=self.cfg.SOLVER.LOG_PERIOD)
            if isinstance(h, hooks.PeriodicWriter)
            else hooks.EvalHook(self.cfg.TEST.EVAL_PERIOD, self._evaluate)
            if isinstance(h, hooks.EvalHook)
            else self._periodic_checkpointer()
            if isinstance(h, hooks.PeriodicCheckpointer)
            else h
            for h in super().build_hooks()
        ]
        if self.model_ema is not None:
            # Updated after each step before the checkpoint and evaluation hooks read it.
            at = next(i for i, h in enumerate(ret) if isinstance(h, hooks.LRScheduler)) + 1
            ret.insert(at, EMAHook(self.model_ema))
        if self.cfg.TEST.AUG.ENABLED:
            # The final evaluation with test-time augmentation of Detectron2's tools/train_net.py,
            # placed before the writer: registered after it (as there), its metrics reach the
            # event storage after the last write and never metrics.json or TensorBoard.
            at = next((i for i, h in enumerate(ret) if isinstance(h, hooks.PeriodicWriter)), len(ret))
            ret.insert(at, hooks.EvalHook(0, self._evaluate_with_tta))
        return ret

    def _periodic_checkpointer(self) -> hooks.PeriodicCheckpointer:
        keep = self.cfg.SOLVER.CHECKPOINT_MAX_TO_KEEP
        if not isinstance(keep, int) or isinstance(keep, bool) or keep < 0:
            raise ValueError(
                f"SOLVER.CHECKPOINT_MAX_TO_KEEP must be an integer >= 0 (0 keeps every periodic "
                f"checkpoint), got {keep!r}"
            )
        return hooks.PeriodicCheckpointer(
            self.checkpointer, self.cfg.SOLVER.CHECKPOINT_PERIOD, max_to_keep=keep or None
        )

    def _evaluated_weights(self) -> contextlib.AbstractContextManager:
        """The model as evaluated: holding the moving average's weights with ``MODEL_EMA``."""
        if self.model_ema is None:
            return contextlib.nullcontext(self.model)
        return self.model_ema.applied_to(self.model)

    def _evaluate(self) -> OrderedDict:
        with self._evaluated_weights() as model:
            self.last_eval_results = self.test(self.cfg, model)
        return self.last_eval_results

    def _evaluate_with_tta(self) -> OrderedDict:
        with self._evaluated_weights() as model:
            results = self.test_with_TTA(self.cfg, model)
        self.last_eval_results = OrderedDict({**(self.last_eval_results or {}), **results})
        return results

    def train(self) -> OrderedDict | None:
        """Train from ``start_iter`` to ``max_iter`` with the hooks, check
        ``TEST.EXPECTED_RESULTS`` as ``DefaultTrainer.train`` does, and return the latest
        evaluation's results (``DefaultTrainer`` returns them only with expected results)."""
        TrainerBase.train(self, self.start_iter, self.max_iter)  # what DefaultTrainer.train runs
        if len(self.cfg.TEST.EXPECTED_RESULTS) and comm.is_main_process():
            if self.last_eval_results is None:
                raise RuntimeError(
                    "TEST.EXPECTED_RESULTS is set but no evaluation ran during training; set "
                    "TEST.EVAL_PERIOD and DATASETS.TEST, or clear TEST.EXPECTED_RESULTS"
                )
            verify_results(self.cfg, self.last_eval_results)
        return self.last_eval_results

    def build_writers(self) -> list:
        if getattr(self, "_semseg_writers", None) is None:
            self._semseg_writers = super().build_writers()
        return self._semseg_writers

    def state_dict(self) -> dict[str, Any]:
        ret = super().state_dict()
        if "_trainer" not in ret:  # detectron2 v0.6 does not save the optimizer; later ones do
            ret["optimizer"] = self.optimizer.state_dict()
            # ... nor the grad scaler (main saves it inside "_trainer")
            if self.mixed_precision is not None and self.mixed_precision.amp.use_grad_scaler:
                ret["grad_scaler"] = self.mixed_precision.grad_scaler.state_dict()
        return ret

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        if "optimizer" in state_dict:
            self.optimizer.load_state_dict(state_dict["optimizer"])
        elif "_trainer" not in state_dict:
            logger.warning("The checkpoint has no optimizer state; the optimizer starts afresh.")
        if "_trainer" not in state_dict and self.mixed_precision is not None:
            self.mixed_precision.load_grad_scaler(state_dict)  # v0.6 layout; main's via "_trainer"

    @classmethod
    def build_model(cls, cfg: CfgNode) -> torch.nn.Module:
        # Before the optimizer and DDP see the parameters: NHWC weights stay NHWC from here.
        return apply_channels_last(super().build_model(cfg), cfg)

    @classmethod
    def build_optimizer(cls, cfg: CfgNode, model: torch.nn.Module) -> torch.optim.Optimizer:
        return build_optimizer(cfg, model)

    @classmethod
    def build_lr_scheduler(
        cls, cfg: CfgNode, optimizer: torch.optim.Optimizer
    ) -> torch.optim.lr_scheduler.LRScheduler:
        return build_lr_scheduler(cfg, optimizer)

    @classmethod
    def build_train_loader(cls, cfg: CfgNode):
        # DATALOADER.CACHE_IMAGES (None: auto, by the records' size) and then
        # DATALOADER.NUM_WORKERS -1 are resolved for the machine; with the cache, Detectron2's
        # DatasetMapper steps (flips, resize) run on decoded images kept in memory.
        records = train_dataset_dicts(cfg)
        cached = resolve_cache_images(cfg, records)
        cfg = _with_workers(cfg, resolve_num_workers(cfg, cached))
        # In the training process (no workers), DATALOADER.PREFETCH_BATCHES runs it ahead in a
        # thread; worker processes already prefetch.
        if cached:
            mapper = CachedDatasetMapper(cfg, records, is_train=True)
        else:
            mapper = DatasetMapper(cfg, is_train=True)
        loader = build_detection_train_loader(cfg, mapper=mapper, dataset=records)
        prefetch = int(cfg.DATALOADER.PREFETCH_BATCHES)
        if prefetch < 0:
            raise ValueError(f"DATALOADER.PREFETCH_BATCHES must be >= 0 (0: off), got {prefetch}")
        if cfg.DATALOADER.NUM_WORKERS == 0:
            if cfg.DATALOADER.LOAD_DURING_BACKWARD:
                if prefetch:
                    raise ValueError(
                        "DATALOADER.LOAD_DURING_BACKWARD and DATALOADER.PREFETCH_BATCHES "
                        f"({prefetch}) both run the loader in a thread; set one of them"
                    )
                return ThreadPrefetcher(loader, 1, on_demand=True)
            if prefetch:
                return ThreadPrefetcher(loader, prefetch)
        return loader

    @classmethod
    def build_test_loader(cls, cfg: CfgNode, dataset_name: str):
        cfg = _with_workers(cfg, resolve_num_workers(cfg, cached=False))
        # TEST.INFERENCE_MODE "whole" / "slide": the model gets the images as loaded.
        mapper = DatasetMapper(cfg, is_train=False, augmentations=test_augmentations(cfg))
        return build_detection_test_loader(cfg, dataset_name, mapper=mapper)

    @classmethod
    def test(cls, cfg: CfgNode, model: torch.nn.Module, evaluators: Any = None) -> OrderedDict:
        """Detectron2's evaluation, under ``SOLVER.AMP``'s autocast when it is enabled (outputs
        cast to float32 before the evaluators' argmax)."""
        check_inference_mode(cfg, model)
        amp = amp_settings(cfg)
        if amp.enabled:
            model = AutocastInference(model, amp)
        return super().test(cfg, model, evaluators)

    @classmethod
    def test_with_TTA(cls, cfg: CfgNode, model: torch.nn.Module) -> OrderedDict:
        """Evaluation with ``TEST.AUG`` (flip, scales) through ``SemanticSegmentorWithTTA``, as
        Detectron2's ``tools/train_net.py`` does for R-CNN; results keyed ``<task>_TTA``, written
        under ``OUTPUT_DIR/inference_TTA``."""
        logger.info("Running inference with test-time augmentation ...")
        model = SemanticSegmentorWithTTA(cfg, model)
        evaluators = [
            cls.build_evaluator(cfg, name, output_folder=os.path.join(cfg.OUTPUT_DIR, "inference_TTA", name))
            for name in cfg.DATASETS.TEST
        ]
        res = cls.test(cfg, model, evaluators)
        return OrderedDict({k + "_TTA": v for k, v in res.items()})

    @classmethod
    def build_evaluator(
        cls, cfg: CfgNode, dataset_name: str, output_folder: str | None = None
    ) -> DatasetEvaluator:
        return build_evaluator(cfg, dataset_name, output_folder)


def check_inference_mode(cfg: CfgNode, model: torch.nn.Module) -> None:
    """``TEST.INFERENCE_MODE`` other than "resize" needs a model that runs it (semseg_heads'
    meta-architectures); a clear error instead of a silently resized evaluation."""
    settings = InferenceSettings.from_config(cfg)
    inner = model.model if isinstance(model, SemanticSegmentorWithTTA) else model
    inner = inner.module if isinstance(inner, DistributedDataParallel) else inner
    if settings.mode != "resize" and not isinstance(inner, SemSegSegmentor):
        raise ValueError(
            f"TEST.INFERENCE_MODE is {settings.mode!r}, which semseg_heads' meta-architectures "
            f"(FCN, UNet, DeconvNet, DilatedContextNet) run; {type(inner).__name__} does not. "
            "Set TEST.INFERENCE_MODE resize for it."
        )


class Predictor(DefaultPredictor):
    """Detectron2's ``DefaultPredictor`` (one BGR image in, the model's output dict out: resize
    by ``INPUT.MIN_SIZE_TEST``, ``INPUT.FORMAT`` conversion) that loads ``MODEL.WEIGHTS``
    through ``SafeDetectionCheckpointer``.

    ``TEST.INFERENCE_MODE`` "whole" / "slide" skips the resize (the model tiles the image as
    given); ``TEST.AUG.ENABLED`` runs ``SemanticSegmentorWithTTA``. ``__call__(image,
    inference=...)`` overrides the inference settings for one call (the browser demo's choice).
    """

    def __init__(self, cfg: CfgNode):
        if cfg.INPUT.FORMAT not in ("RGB", "BGR"):
            raise ValueError(f"INPUT.FORMAT must be 'RGB' or 'BGR', got {cfg.INPUT.FORMAT!r}")
        # DefaultPredictor builds the model, metadata and resize as usual; with no weights named
        # its plain checkpointer loads nothing, and the weights come through the safe one.
        unloaded = cfg.clone()
        unloaded.defrost()
        unloaded.MODEL.WEIGHTS = ""
        super().__init__(unloaded)
        self.cfg = cfg.clone()
        apply_channels_last(self.model, self.cfg)
        self.amp = amp_settings(self.cfg)
        SafeDetectionCheckpointer.for_inference(self.model, cfg).load(cfg.MODEL.WEIGHTS)
        self.inference = InferenceSettings.from_config(self.cfg)
        check_inference_mode(self.cfg, self.model)
        self.tta = SemanticSegmentorWithTTA(self.cfg, self.model) if self.cfg.TEST.AUG.ENABLED else None

    def __call__(self, original_image: Any, inference: InferenceSettings | None = None) -> dict[str, Any]:
        """``DefaultPredictor.__call__`` under ``SOLVER.AMP``'s autocast; outputs in float32.

        ``inference`` (default: the config's) chooses resize / whole / slide for this call.
        """
        settings = inference or self.inference
        if settings.mode != "resize" and not isinstance(self.model, SemSegSegmentor):
            raise ValueError(
                f"inference mode {settings.mode!r} needs one of semseg_heads' meta-architectures; "
                f"{type(self.model).__name__} runs 'resize' only"
            )
        if self.tta is not None and settings != self.inference:
            raise ValueError(
                "TEST.AUG.ENABLED: the augmented images run with the config's TEST.INFERENCE_MODE; "
                "a per-call inference setting would be ignored, so it is refused"
            )
        with torch.no_grad(), self.amp.autocast():
            if self.input_format == "RGB":
                original_image = original_image[:, :, ::-1]
            height, width = original_image.shape[:2]
            image = original_image
            if settings.mode == "resize":
                image = self.aug.get_transform(original_image).apply_image(original_image)
            image = torch.as_tensor(np.ascontiguousarray(image).astype("float32").transpose(2, 0, 1))
            inputs = [{"image": image, "height": height, "width": width}]
            if self.tta is not None:
                out = self.tta(inputs)[0]
            elif isinstance(self.model, SemSegSegmentor):
                out = self.model.inference_with(inputs, settings)[0]
            else:
                out = self.model(inputs)[0]
        return outputs_to_float32(out)
