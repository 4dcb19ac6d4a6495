"""Meta-architectures (``META_ARCH_REGISTRY``) and their heads (``SEM_SEG_HEADS_REGISTRY``)."""

from .deconvnet import DeconvNet, DeconvNetHead
from .dilated import ContextModule, DilatedContextHead, DilatedContextNet
from .fcn import FCN, FCNHead
from .unet import UNet, UNetHead

__all__ = [
    "ContextModule",
    "DeconvNet",
    "DeconvNetHead",
    "DilatedContextHead",
    "DilatedContextNet",
    "FCN",
    "FCNHead",
    "UNet",
    "UNetHead",
]
