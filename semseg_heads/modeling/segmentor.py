"""What every architecture shares: the head contract and the meta-architecture around it.

The meta-architectures are Detectron2's ``SemanticSegmentor``: it normalises pixels with
``MODEL.PIXEL_MEAN/STD``, pads images to ``backbone.size_divisibility`` (targets with
``IGNORE_VALUE``), and post-processes with ``sem_seg_postprocess`` to each input's
``height``/``width``. This module adds input checks and picks each architecture's head; the
heads share ``SemSegHead``: logits covering the padded input from pixel 0, and ``SemSegLoss``.
At inference ``SemSegSegmentor`` also runs ``TEST.INFERENCE_MODE`` "whole" (native resolution)
and "slide" (overlapping tiles), the shared implementation in ``sliding_window``.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from typing import Any

import torch
from detectron2.config import CfgNode, configurable
from detectron2.modeling import SEM_SEG_HEADS_REGISTRY, SemanticSegmentor, build_backbone
from torch import nn

from .losses import SemSegLoss
from .sliding_window import InferenceSettings, native_inference

# Detectron2's default MODEL.SEM_SEG_HEAD.NAME: left as is, it means "the architecture's own head".
_DETECTRON2_DEFAULT_HEAD = "SemSegFPNHead"


def loss_args_from_config(cfg: CfgNode) -> dict[str, Any]:
    """The ``SemSegLoss`` arguments every head reads from the config."""
    return {
        "num_classes": cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
        "ignore_value": cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE,
        "loss_type": cfg.MODEL.SEMSEG_HEADS.LOSS_TYPE,
        "class_weights": tuple(cfg.MODEL.SEMSEG_HEADS.CLASS_WEIGHTS),
        "loss_weight": cfg.MODEL.SEM_SEG_HEAD.LOSS_WEIGHT,
        "dice_per_image": cfg.MODEL.SEMSEG_HEADS.DICE_PER_IMAGE,
        "border_weight": cfg.MODEL.SEMSEG_HEADS.BORDER_WEIGHT,
        "border_sigma": cfg.MODEL.SEMSEG_HEADS.BORDER_SIGMA,
    }


class SemSegHead(nn.Module, metaclass=ABCMeta):
    """Base of the heads: Detectron2's head interface ``forward(features, targets)``.

    Subclasses implement ``layers(features) -> logits`` (N, C, H', W') covering the padded input
    from pixel 0 (H' >= H, W' >= W). Training returns ``(None, losses)``, inference
    ``(logits, {})``, as Detectron2's ``SemSegFPNHead`` does, so a head also runs inside
    Detectron2's own ``SemanticSegmentor``.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        ignore_value: int = 255,
        loss_type: str = "cross_entropy",
        class_weights: tuple[float, ...] = (),
        loss_weight: float = 1.0,
        dice_per_image: bool = False,
        border_weight: float = 0.0,
        border_sigma: float = 2.0,
    ):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"MODEL.SEM_SEG_HEAD.NUM_CLASSES must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_value = ignore_value  # SemanticSegmentor pads targets with it
        self.loss = SemSegLoss(
            num_classes=num_classes,
            ignore_value=ignore_value,
            loss_type=loss_type,
            class_weights=class_weights,
            loss_weight=loss_weight,
            dice_per_image=dice_per_image,
            border_weight=border_weight,
            border_sigma=border_sigma,
        )

    @abstractmethod
    def layers(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """The head's network: backbone features -> logits (N, num_classes, H', W')."""

    def forward(
        self, features: dict[str, torch.Tensor], targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        logits = self.layers(features)
        if self.training:
            return None, self.loss(logits, targets)
        # float32 for sem_seg_postprocess and the evaluators' argmax under mixed precision.
        return logits.float(), {}


def check_batched_inputs(batched_inputs: Any, training: bool, channels: int) -> None:
    """Clear errors for malformed inputs instead of shape errors deep inside a network."""
    if not isinstance(batched_inputs, (list, tuple)) or not batched_inputs:
        raise ValueError("the model takes a non-empty list of dicts, as Detectron2's DatasetMapper makes")
    for i, item in enumerate(batched_inputs):
        image = item.get("image") if isinstance(item, dict) else None
        if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] != channels:
            shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise ValueError(
                f"input {i}: 'image' must be a ({channels}, H, W) tensor (channels as MODEL.PIXEL_MEAN), "
                f"got {shape}"
            )
        if "sem_seg" in item:
            sem_seg = item["sem_seg"]
            if not isinstance(sem_seg, torch.Tensor) or sem_seg.shape != image.shape[1:]:
                shape = tuple(sem_seg.shape) if isinstance(sem_seg, torch.Tensor) else type(sem_seg).__name__
                raise ValueError(
                    f"input {i}: 'sem_seg' must be an (H, W) tensor matching the image "
                    f"{tuple(image.shape[1:])}, got {shape}"
                )
            if sem_seg.is_floating_point():
                raise ValueError(f"input {i}: 'sem_seg' must hold integer class ids, got {sem_seg.dtype}")
        elif training:
            raise ValueError(f"input {i}: training needs 'sem_seg' (the per-pixel class ids)")
    if len({"sem_seg" in item for item in batched_inputs}) > 1:
        raise ValueError("either every input has 'sem_seg' or none has (Detectron2 batches the targets)")


class SemSegSegmentor(SemanticSegmentor):
    """Detectron2's ``SemanticSegmentor`` with the architecture's own head and input checks.

    Subclasses name their head in ``head_name``. ``MODEL.SEM_SEG_HEAD.NAME`` may be left at
    Detectron2's default or set to that head; another head is an error (pair arbitrary
    backbones and heads with ``META_ARCHITECTURE: SemanticSegmentor`` instead).

    Inference follows ``test_inference`` (``TEST.INFERENCE_MODE`` and ``TEST.SLIDING_WINDOW``):
    "resize" is Detectron2's own path on the image as the caller resized it; "whole" and
    "slide" run ``sliding_window.native_inference``.
    """

    head_name: str = ""

    @configurable
    def __init__(self, *, test_inference: InferenceSettings | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.test_inference = test_inference or InferenceSettings()

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict[str, Any]:
        configured = cfg.MODEL.SEM_SEG_HEAD.NAME
        if configured not in (cls.head_name, _DETECTRON2_DEFAULT_HEAD):
            raise ValueError(
                f"MODEL.META_ARCHITECTURE {cls.__name__} uses the head {cls.head_name!r} but "
                f"MODEL.SEM_SEG_HEAD.NAME is {configured!r}; set it to {cls.head_name!r}, or use "
                "META_ARCHITECTURE 'SemanticSegmentor' to combine another head with this backbone"
            )
        backbone = build_backbone(cfg)
        # The head's from_config checks that the backbone serves it (each head knows its needs).
        sem_seg_head = SEM_SEG_HEADS_REGISTRY.get(cls.head_name)(cfg, backbone.output_shape())
        return {
            "backbone": backbone,
            "sem_seg_head": sem_seg_head,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "test_inference": InferenceSettings.from_config(cfg),
        }

    def forward(self, batched_inputs: list[dict[str, Any]]) -> Any:
        if self.training:
            check_batched_inputs(batched_inputs, True, self.pixel_mean.shape[0])
            return super().forward(batched_inputs)
        return self.inference_with(batched_inputs, self.test_inference)

    def inference_with(
        self, batched_inputs: list[dict[str, Any]], settings: InferenceSettings
    ) -> list[dict[str, torch.Tensor]]:
        """Inference with ``settings`` in place of the config's (the demo's per-request choice)."""
        if self.training:
            raise RuntimeError("inference_with runs in eval mode; call .eval() first")
        check_batched_inputs(batched_inputs, False, self.pixel_mean.shape[0])
        if settings.mode == "resize":
            return super().forward(batched_inputs)
        return native_inference(self, batched_inputs, settings)
