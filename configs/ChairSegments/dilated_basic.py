"""Dilated front-end + basic context module: the LazyConfig twin of dilated_basic.yaml."""

from .dilated_frontend import dataloader, lr_multiplier, model, optimizer, train

model.sem_seg_head.context = "basic"  # MODEL.DILATED.CONTEXT

__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "train"]
