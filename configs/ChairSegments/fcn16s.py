"""FCN-16s, VGG16: the LazyConfig twin of fcn16s.yaml (fcn32s.py fusing pool4)."""

from .fcn32s import dataloader, lr_multiplier, model, optimizer, train

model.sem_seg_head.input_shape.out_features = ["pool4", "fc7"]  # MODEL.FCN.OUTPUT_STRIDE 16

__all__ = ["dataloader", "lr_multiplier", "model", "optimizer", "train"]
