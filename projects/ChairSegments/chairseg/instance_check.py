"""What Mask R-CNN's mask representation allows on Chair Segments (issue 18's evaluation check)."""

from __future__ import annotations

import detectron2.data.transforms as T
import torch
from detectron2.data import DatasetMapper
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Instances


def perfect_mask_head(record: dict, input_size: int, mask_size: int) -> Instances:
    """The output of a perfect Mask R-CNN on ``record`` at ``input_size``: its ground-truth boxes
    and the ``mask_size`` x ``mask_size`` targets ``mask_rcnn_loss`` trains on (Detectron2's
    ``DatasetMapper``, bitmask format, no flip; ``BitMasks.crop_and_resize``), pasted back at the
    record's size by ``detector_postprocess``."""
    mapper = DatasetMapper(
        is_train=True,
        augmentations=[T.ResizeShortestEdge(input_size, input_size)],
        image_format="BGR",
        use_instance_mask=True,
        instance_mask_format="bitmask",
    )
    inst = mapper(dict(record))["instances"]
    pred = Instances(inst.image_size)
    pred.pred_boxes = inst.gt_boxes
    pred.scores = torch.ones(len(inst))
    pred.pred_classes = inst.gt_classes
    pred.pred_masks = inst.gt_masks.crop_and_resize(inst.gt_boxes.tensor, mask_size).float()[:, None]
    return detector_postprocess(pred, record["height"], record["width"])
