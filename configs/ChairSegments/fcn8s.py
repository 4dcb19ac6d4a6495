"""FCN-8s, VGG16: the LazyConfig twin of fcn8s.yaml (fcn32s.py fusing pool4 and pool3)."""

from .fcn32s import dataloader, lr_multiplier, model, optimizer, train

model.sem_seg_head.input_shape.out_features = ["pool3", "pool4", "fc7"]  # MODEL.FCN.OUTPUT_STRIDE 8

__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "train"]
