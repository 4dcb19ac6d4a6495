"""A CPU-sized Mask R-CNN R18-FPN: the LazyConfig twin of scratch/mask_rcnn_R_18_FPN.yaml
(see its comments for the choices). Not carried over: SOLVER.CLIP_GRADIENTS, which
Detectron2's lazyconfig_train_net.py has no key for (its optimizer is built as configured)."""

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec

from ...common.schedule import cosine_with_warmup
from ..mask_rcnn_R_50_FPN import dataloader, model, optimizer, train

_bottom_up = model.backbone.bottom_up
_bottom_up.stages.depth = 18  # basic blocks, res2 64 channels (make_default_stages)
del _bottom_up.stages.stride_in_1x1  # a bottleneck argument; BasicBlock takes none
model.backbone.out_channels = 128
model.backbone.norm = "BN"
model.proposal_generator.head.in_channels = 128
model.proposal_generator.anchor_generator.sizes = [[8], [16], [32], [64], [128]]
model.proposal_generator.pre_nms_topk = (500, 250)
model.proposal_generator.post_nms_topk = (128, 50)
model.proposal_generator.batch_size_per_image = 128
model.roi_heads.batch_size_per_image = 64  # one chair per image
model.roi_heads.box_head.input_shape = ShapeSpec(channels=128, height=7, width=7)
model.roi_heads.box_head.fc_dims = [256, 256]
model.roi_heads.box_head.conv_norm = "BN"
model.roi_heads.box_predictor.input_shape = ShapeSpec(channels=256)
model.roi_heads.mask_head.input_shape = ShapeSpec(channels=128, width=14, height=14)
model.roi_heads.mask_head.conv_dims = [128, 128, 128, 128, 128]
model.roi_heads.mask_head.conv_norm = "BN"

# 64x64 images upscaled x2 to 128.
dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=(128,), max_size=128, sample_style="choice"),
    L(T.RandomFlip)(horizontal=True),
]
dataloader.test.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=128, max_size=128)]

optimizer.lr = 0.02
optimizer.momentum = 0.9
optimizer.weight_decay = 0.0001
train.max_iter = 20000
lr_multiplier = cosine_with_warmup(train.max_iter, warmup_iters=200, warmup_factor=0.01)

__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "train"]
