"""Backbones registered in Detectron2's ``BACKBONE_REGISTRY``."""

from .resnet import DilatedResNet, build_dilated_resnet_backbone
from .unet import UNetEncoder, build_unet_backbone
from .vgg import VGG16, build_vgg16_backbone

__all__ = [
    "DilatedResNet",
    "UNetEncoder",
    "VGG16",
    "build_dilated_resnet_backbone",
    "build_unet_backbone",
    "build_vgg16_backbone",
]
