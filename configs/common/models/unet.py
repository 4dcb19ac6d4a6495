"""U-Net (Ronneberger et al. 2015), padded, with BN: ``configs/ChairSegments/unet.yaml``."""

from detectron2.config import LazyCall as L

from semseg_heads.modeling import UNet, UNetEncoder, UNetHead, unet_output_shape

from ..semseg import loss as _loss
from ..semseg import pixel as _pixel

model = L(UNet)(
    backbone=L(UNetEncoder)(in_channels=3, base_width=64, depth=4, bilinear=False, norm="BN"),
    sem_seg_head=L(UNetHead)(
        input_shape=L(unet_output_shape)(
            base_width="${...backbone.base_width}",
            depth="${...backbone.depth}",
            bilinear="${...backbone.bilinear}",
        ),
        bilinear="${..backbone.bilinear}",
        norm="BN",
        **_loss,
    ),
    pixel_mean=_pixel["mean"],
    pixel_std=_pixel["std"],
)
