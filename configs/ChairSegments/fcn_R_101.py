"""FCN-ResNet101: the LazyConfig twin of fcn_R_101.yaml (fcn_R_50.py with 101 layers)."""

from .fcn_R_50 import dataloader, lr_multiplier, model, optimizer, train

model.backbone.stages.depth = 101
train.init_checkpoint = "torchvision://resnet101"

__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "train"]
