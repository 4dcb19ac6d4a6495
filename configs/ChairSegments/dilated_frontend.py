"""Dilated front-end: the LazyConfig twin of dilated_frontend.yaml."""

from ..common.data.chair_segments import dataloader
from ..common.models.dilated import model
from ..common.optim import SGD as _SGD
from ..common.schedule import constant_with_warmup
from ..common.train import train

model.sem_seg_head.context = "none"  # MODEL.DILATED.CONTEXT

# SGD with momentum 0.9, weight decay 5e-4; lr and epochs as the FCN-VGG16 reference.
optimizer = _SGD
optimizer.lr = 0.0001
optimizer.weight_decay = 0.0005
train.max_iter = 250000
train.init_checkpoint = "torchvision://vgg16"
lr_multiplier = constant_with_warmup(train.max_iter)

__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "train"]
