"""../unet.py from random weights: the LazyConfig twin of scratch/unet.yaml (the architecture of
../unet.py, the recipe of ../../common/scratch.py, as Base-Scratch.yaml)."""

from ...common.scratch import class_weights as _class_weights
from ...common.scratch import lr_multiplier, optimizer
from ...common.scratch import max_iter as _max_iter
from ..unet import dataloader, model, train

model.sem_seg_head.class_weights = _class_weights
train.init_checkpoint = ""
train.max_iter = _max_iter

__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "train"]
