"""Dilated front-end + large context module: the LazyConfig twin of dilated_large.yaml."""

from .dilated_frontend import dataloader, lr_multiplier, model, optimizer, train

model.sem_seg_head.context = "large"  # MODEL.DILATED.CONTEXT

__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "train"]
