"""Mask R-CNN R50-FPN on Chair Segments: the LazyConfig twin of mask_rcnn_R_50_FPN.yaml.

Built from Detectron2's own LazyConfig pieces (its model zoo's ``common/``, in v0.6 and main):
``common/models/mask_rcnn_fpn.py``, ``common/data/coco.py``, ``common/optim.py``,
``common/train.py``, with the yaml's changes. The yacs trainer also reports the semantic
metrics of the instance predictions (InstancesToSemSegEvaluator); here the evaluator is
Detectron2's COCOEvaluator alone.
"""

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.model_zoo import get_config

from ..common.schedule import multistep_with_warmup

model = get_config("common/models/mask_rcnn_fpn.py").model
# From scratch as the model zoo's Misc/scratch_* recipes: BN in every ResNet block, nothing frozen.
model.backbone.bottom_up.stem.norm = "BN"
model.backbone.bottom_up.stages.norm = "BN"
model.backbone.bottom_up.freeze_at = 0
# Anchors one octave below COCO's (16..256 px on P2..P6) for 256x256 inputs.
model.proposal_generator.anchor_generator.sizes = [[16], [32], [64], [128], [256]]
model.proposal_generator.pre_nms_topk = (1000, 500)  # (train, test)
model.proposal_generator.post_nms_topk = (256, 100)
model.roi_heads.num_classes = 1
model.roi_heads.batch_size_per_image = 128  # one object per image
model.roi_heads.box_predictor.test_topk_per_image = 10  # TEST.DETECTIONS_PER_IMAGE

dataloader = get_config("common/data/coco.py").dataloader
dataloader.train.dataset.names = "chair_segments_64_train_instance"
dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=(256,), max_size=256, sample_style="choice"),
    L(T.RandomFlip)(horizontal=True),
]
# Chair Segments' instance annotations are RLE masks, which need bitmask mode.
dataloader.train.mapper.instance_mask_format = "bitmask"
dataloader.train.total_batch_size = 10
dataloader.test.dataset.names = "chair_segments_64_val_instance"
dataloader.test.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=256, max_size=256)]

optimizer = get_config("common/optim.py").SGD
optimizer.lr = 0.0125  # the zoo's 0.02 @ 16 scaled linearly to batch 10
optimizer.weight_decay = 0.0001

train = get_config("common/train.py").train
train.init_checkpoint = ""
train.max_iter = 50000
train.checkpointer.period = 5000
train.eval_period = 5000
# The COCO base's WarmupMultiStepLR: 1,000 warm-up iterations from 0.001.
lr_multiplier = multistep_with_warmup(train.max_iter, (35000, 45000), warmup_iters=1000, warmup_factor=0.001)
