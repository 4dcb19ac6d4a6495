"""Meta-architectures, backbones, heads and losses (registered in Detectron2's registries).

Importing this package registers:

- ``META_ARCH_REGISTRY``: ``FCN``, ``UNet``, ``DeconvNet``, ``DilatedContextNet``;
- ``BACKBONE_REGISTRY``: ``build_vgg16_backbone``, ``build_unet_backbone``,
  ``build_unet_pyramid_backbone`` (both U-Net paths, for Detectron2's detectors),
  ``build_dilated_resnet_backbone``;
- ``SEM_SEG_HEADS_REGISTRY``: ``FCNHead``, ``UNetHead``, ``DeconvNetHead``, ``DilatedContextHead``,
  ``SemSegFPNDiceHead`` (Detectron2's ``SemSegFPNHead`` with a Dice term);
- ``ROI_MASK_HEAD_REGISTRY``: ``MaskRCNNDiceHead`` (Mask R-CNN's mask head with a Dice term);
- Detectron2's ``PathManager``: the ``torchvision://`` prefix of ``MODEL.WEIGHTS`` (ImageNet starts).
"""

from .backbone import (
    VGG16,
    DilatedResNet,
    UNetEncoder,
    UNetPyramid,
    build_dilated_resnet_backbone,
    build_unet_backbone,
    build_unet_pyramid_backbone,
    build_vgg16_backbone,
    dilated_resnet_output_shape,
    unet_output_shape,
    unet_pyramid_weights,
    vgg16_output_shape,
)
from .dice_heads import MaskRCNNDiceHead, SemSegFPNDiceHead, mask_dice_loss
from .losses import SemSegLoss, soft_dice_loss
from .mask_scoring import maskness, rescore_by_maskness
from .meta_arch import (
    FCN,
    ContextModule,
    DeconvNet,
    DeconvNetHead,
    DilatedContextHead,
    DilatedContextNet,
    FCNHead,
    UNet,
    UNetHead,
)
from .segmentor import SemSegHead, SemSegSegmentor
from .sliding_window import InferenceSettings, infer_logits, native_inference, sliding_window_logits
from .test_time_augmentation import SemanticSegmentorWithTTA
from .torchvision_hub import TorchvisionHandler, TorchvisionWeightsError

__all__ = [
    "FCN",
    "VGG16",
    "ContextModule",
    "DeconvNet",
    "DeconvNetHead",
    "DilatedContextHead",
    "DilatedContextNet",
    "DilatedResNet",
    "FCNHead",
    "InferenceSettings",
    "MaskRCNNDiceHead",
    "SemSegHead",
    "SemSegFPNDiceHead",
    "SemSegLoss",
    "SemSegSegmentor",
    "SemanticSegmentorWithTTA",
    "TorchvisionHandler",
    "TorchvisionWeightsError",
    "UNet",
    "UNetEncoder",
    "UNetPyramid",
    "UNetHead",
    "build_dilated_resnet_backbone",
    "build_unet_backbone",
    "build_unet_pyramid_backbone",
    "build_vgg16_backbone",
    "infer_logits",
    "mask_dice_loss",
    "maskness",
    "native_inference",
    "rescore_by_maskness",
    "sliding_window_logits",
    "dilated_resnet_output_shape",
    "soft_dice_loss",
    "unet_output_shape",
    "unet_pyramid_weights",
    "vgg16_output_shape",
]
