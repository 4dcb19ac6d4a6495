"""Backbones registered in Detectron2's ``BACKBONE_REGISTRY``."""

from .resnet import DilatedResNet, build_dilated_resnet_backbone, dilated_resnet_output_shape
from .unet import UNetEncoder, build_unet_backbone, unet_output_shape
from .unet_pyramid import UNetPyramid, build_unet_pyramid_backbone, unet_pyramid_weights
from .vgg import VGG16, build_vgg16_backbone, vgg16_output_shape

__all__ = [
    "DilatedResNet",
    "UNetEncoder",
    "UNetPyramid",
    "VGG16",
    "build_dilated_resnet_backbone",
    "build_unet_backbone",
    "build_unet_pyramid_backbone",
    "build_vgg16_backbone",
    "dilated_resnet_output_shape",
    "unet_output_shape",
    "unet_pyramid_weights",
    "vgg16_output_shape",
]
