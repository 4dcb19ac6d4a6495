"""U-Net: the LazyConfig twin of unet.yaml."""

from ..common.data.chair_segments import dataloader
from ..common.models.unet import model
from ..common.optim import Adam as _Adam
from ..common.schedule import constant_with_warmup
from ..common.train import train

# Reference U-Net recipe: Adam, lr 1e-3, 20 epochs, from random weights.
optimizer = _Adam
optimizer.lr = 0.001
optimizer.weight_decay = 0.0
train.max_iter = 100000
lr_multiplier = constant_with_warmup(train.max_iter)

__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "train"]
