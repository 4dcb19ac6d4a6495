"""DeconvNet (Noh et al. 2015): VGG16 with BN recording max-pool switches and the mirrored
decoder, as ``configs/ChairSegments/deconvnet.yaml`` builds it."""

from detectron2.config import LazyCall as L

from semseg_heads.modeling import VGG16, DeconvNet, DeconvNetHead, vgg16_output_shape

from ..semseg import loss as _loss
from ..semseg import pixel as _pixel

model = L(DeconvNet)(
    backbone=L(VGG16)(
        in_channels=3,
        widths=[64, 128, 256, 512, 512],
        fc_width=4096,
        norm="BN",
        pad_input=0,
        dilated=False,
        record_switches=True,  # the decoder unpools with them
        fc_dropout=0.0,  # fc6/fc7 are followed by BN + ReLU
        out_features=["pool1", "pool2", "pool3", "pool4", "pool5", "fc7"],
    ),
    sem_seg_head=L(DeconvNetHead)(
        input_shape=L(vgg16_output_shape)(
            widths="${...backbone.widths}",
            fc_width="${...backbone.fc_width}",
            record_switches=True,
            out_features="${...backbone.out_features}",
        ),
        norm="BN",
        **_loss,
    ),
    pixel_mean=_pixel["mean"],
    pixel_std=_pixel["std"],
)
