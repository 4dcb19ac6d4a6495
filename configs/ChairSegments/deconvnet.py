"""DeconvNet: the LazyConfig twin of deconvnet.yaml."""

from ..common.data.chair_segments import dataloader
from ..common.models.deconvnet import model
from ..common.optim import SGD as _SGD
from ..common.schedule import constant_with_warmup
from ..common.train import train

# The paper's SGD (lr 0.01, momentum 0.9, weight decay 5e-4) from ImageNet VGG16-BN (Sec. 4.1).
optimizer = _SGD
optimizer.lr = 0.01
optimizer.weight_decay = 0.0005
train.max_iter = 250000
train.init_checkpoint = "torchvision://vgg16_bn"
lr_multiplier = constant_with_warmup(train.max_iter)

__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "train"]
