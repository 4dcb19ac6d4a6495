"""FCN-ResNet50: the LazyConfig twin of fcn_R_50.yaml."""

from ..common.data.chair_segments import dataloader
from ..common.models.fcn_resnet import model
from ..common.optim import SGD as _SGD
from ..common.schedule import constant_with_warmup
from ..common.train import train

# Reference FCN-ResNet recipe: SGD, lr 1e-4, momentum 0.9, weight decay 1e-5, 100 epochs.
optimizer = _SGD
optimizer.lr = 0.0001
optimizer.weight_decay = 0.00001
train.max_iter = 500000
train.init_checkpoint = "torchvision://resnet50"
lr_multiplier = constant_with_warmup(train.max_iter)

__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "train"]
