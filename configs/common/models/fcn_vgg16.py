"""FCN-32s on VGG16 (Long et al. 2015), as ``configs/ChairSegments/fcn32s.yaml`` builds it.

The head's ``input_shape.out_features`` picks the variant (MODEL.FCN.OUTPUT_STRIDE):
["fc7"] FCN-32s, ["pool4", "fc7"] FCN-16s, ["pool3", "pool4", "fc7"] FCN-8s.
"""

from detectron2.config import LazyCall as L

from semseg_heads.modeling import FCN, VGG16, FCNHead, vgg16_output_shape

from ..semseg import loss as _loss
from ..semseg import pixel as _pixel

model = L(FCN)(
    backbone=L(VGG16)(
        in_channels=3,
        widths=[64, 128, 256, 512, 512],
        fc_width=4096,
        norm="",  # no BN in the paper
        pad_input=0,  # pad-to-32 instead of conv1_1's padding of 100 (see fcn32s.yaml)
        dilated=False,
        record_switches=False,
        fc_dropout=0.5,
        out_features=["pool3", "pool4", "fc7"],
    ),
    sem_seg_head=L(FCNHead)(
        input_shape=L(vgg16_output_shape)(
            widths="${...backbone.widths}",
            fc_width="${...backbone.fc_width}",
            pad_input="${...backbone.pad_input}",
            out_features=["fc7"],
        ),
        conv_dims=0,
        norm="BN",
        dropout=0.1,
        **_loss,
    ),
    pixel_mean=_pixel["mean"],
    pixel_std=_pixel["std"],
)
