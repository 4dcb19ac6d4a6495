"""Test-time augmentation for semantic segmentors: horizontal flip and multi-scale.

Detectron2 ships TTA for detection only (``GeneralizedRCNNWithTTA``); this is its counterpart
for any ``SemanticSegmentor`` (semseg_heads' meta-architectures and Detectron2's own), with the
same keys and the same augmented inputs: Detectron2's ``DatasetMapperTTA`` resizes the image's
shorter side to each of ``TEST.AUG.MIN_SIZES`` (longer side at most ``TEST.AUG.MAX_SIZE``; a
size of 0 keeps the image as loaded) and, with ``TEST.AUG.FLIP``, adds the horizontal mirror of
each. Every augmented image is segmented by the model as configured (``TEST.INFERENCE_MODE``
included), its logits come back at the input's ``height``/``width`` (``sem_seg_postprocess``),
flipped ones are flipped back, and the softmax probabilities are averaged, as
mmsegmentation's ``aug_test`` does.

The output is ``[{"sem_seg": (C, H, W) probabilities}]``: Detectron2's evaluators and the demo
take the argmax, which softmax does not change for a single augmentation.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.data.detection_utils import read_image
from detectron2.modeling import SemanticSegmentor
from detectron2.modeling.test_time_augmentation import DatasetMapperTTA
from fvcore.transforms import HFlipTransform
from torch import nn
from torch.nn.parallel import DistributedDataParallel

__all__ = ["SemanticSegmentorWithTTA"]


class SemanticSegmentorWithTTA(nn.Module):
    """A ``SemanticSegmentor`` with test-time augmentation; called like the model in eval mode."""

    def __init__(self, cfg: CfgNode, model: nn.Module, tta_mapper: Any = None):
        super().__init__()
        if isinstance(model, DistributedDataParallel):
            model = model.module
        if not isinstance(model, SemanticSegmentor):
            raise TypeError(
                "TEST.AUG for semantic segmentation needs a SemanticSegmentor (semseg_heads' "
                f"meta-architectures or Detectron2's own); got {type(model).__name__}. Detectron2's "
                "GeneralizedRCNNWithTTA covers R-CNN models."
            )
        if not cfg.TEST.AUG.MIN_SIZES:
            raise ValueError("TEST.AUG.MIN_SIZES is empty: give at least one size (0 = as loaded)")
        self.model = model
        self.input_format = cfg.INPUT.FORMAT
        self.tta_mapper = tta_mapper if tta_mapper is not None else DatasetMapperTTA(cfg)

    def _with_image(self, item: dict[str, Any]) -> dict[str, Any]:
        ret = copy.copy(item)
        # The targets (test loaders keep them) are not resized with the augmented images.
        ret.pop("sem_seg", None)
        if "image" not in ret:
            image = read_image(ret.pop("file_name"), self.input_format)
            ret["image"] = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        ret.setdefault("height", ret["image"].shape[1])
        ret.setdefault("width", ret["image"].shape[2])
        return ret

    def forward(self, batched_inputs: list[dict[str, Any]]) -> list[dict[str, torch.Tensor]]:
        if self.model.training:
            raise RuntimeError("SemanticSegmentorWithTTA is for inference; call .eval() first")
        return [self._inference_one(self._with_image(x)) for x in batched_inputs]

    def _inference_one(self, item: dict[str, Any]) -> dict[str, torch.Tensor]:
        total: torch.Tensor | None = None
        augmented = self.tta_mapper(item)
        for aug in augmented:
            flipped = any(isinstance(t, HFlipTransform) for t in aug.pop("transforms").transforms)
            # One image per call: batching different sizes would pad the smaller ones, and the
            # padding changes a conv net's logits near the border.
            logits = self.model([aug])[0]["sem_seg"].float()
            if flipped:
                logits = logits.flip(-1)
            probs = logits.softmax(dim=0)
            total = probs if total is None else total + probs
        assert total is not None  # DatasetMapperTTA gives one input per size at least
        return {"sem_seg": total / len(augmented)}
