"""Dilated front-end (Yu & Koltun 2016), as ``configs/ChairSegments/dilated_frontend.yaml``
builds it; ``sem_seg_head.context`` "basic" / "large" adds the context module."""

from detectron2.config import LazyCall as L

from semseg_heads.modeling import VGG16, DilatedContextHead, DilatedContextNet, vgg16_output_shape

from ..semseg import loss as _loss
from ..semseg import pixel as _pixel

model = L(DilatedContextNet)(
    backbone=L(VGG16)(
        in_channels=3,
        widths=[64, 128, 256, 512, 512],
        fc_width=4096,
        norm="",
        pad_input=0,
        dilated=True,
        record_switches=False,
        fc_dropout=0.5,
        out_features=["fc7"],
    ),
    sem_seg_head=L(DilatedContextHead)(
        input_shape=L(vgg16_output_shape)(
            widths="${...backbone.widths}",
            fc_width="${...backbone.fc_width}",
            dilated=True,
            out_features=["fc7"],
        ),
        context="none",
        norm="",
        **_loss,
    ),
    pixel_mean=_pixel["mean"],
    pixel_std=_pixel["std"],
)
