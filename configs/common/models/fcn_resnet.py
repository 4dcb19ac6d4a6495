"""FCN-ResNet50 (torchvision's ``fcn_resnet50`` without the aux head), as
``configs/ChairSegments/fcn_R_50.yaml`` builds it: res4/res5 dilated 2/4 (output stride 8),
a 3x3 conv (512) + BN + ReLU + dropout 0.1 before the score layer."""

from detectron2.config import LazyCall as L
from detectron2.modeling.backbone import BasicStem

from semseg_heads.modeling import FCN, DilatedResNet, FCNHead, dilated_resnet_output_shape

from ..semseg import loss as _loss
from ..semseg import pixel as _pixel

model = L(FCN)(
    backbone=L(DilatedResNet)(
        stem=L(BasicStem)(in_channels=3, out_channels=64, norm="BN"),
        stages=L(DilatedResNet.make_dilated_stages)(
            depth=50,
            in_channels="${..stem.out_channels}",
            res2_out_channels=256,
            bottleneck_channels=64,
            num_groups=1,
            norm="${..stem.norm}",
            stride_in_1x1=False,  # torchvision's layout: converted weights load as is
            res4_dilation=2,
            res5_dilation=4,
        ),
        out_features=["res5"],
        freeze_at=0,  # everything trains, as torchvision's FCN-ResNet
    ),
    sem_seg_head=L(FCNHead)(
        input_shape=L(dilated_resnet_output_shape)(
            res2_out_channels="${...backbone.stages.res2_out_channels}",
            res4_dilation="${...backbone.stages.res4_dilation}",
            res5_dilation="${...backbone.stages.res5_dilation}",
            out_features="${...backbone.out_features}",
        ),
        conv_dims=512,
        norm="BN",
        dropout=0.1,
        **_loss,
    ),
    pixel_mean=_pixel["mean"],
    pixel_std=_pixel["std"],
)
