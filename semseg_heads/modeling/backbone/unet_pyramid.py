"""Both U-Net paths (Ronneberger et al. 2015, Sec. 2) as a feature pyramid for Detectron2's detectors.

``UNetPyramid`` is the contracting path followed by the expansive path, without the final 1x1
classifier: it outputs the expansive path's feature at every level (``up{i}``, stride
``2**i``) and the bottleneck (``level{D}``), so Detectron2's RPN and RoI heads can read the
same full-resolution features U-Net classifies. Its parameters mirror ``UNet``'s
(``encoder.*`` = ``backbone.*``, ``ups.*`` = ``sem_seg_head.ups.*``):
:func:`unet_pyramid_weights` turns a trained U-Net checkpoint into a start for it (a
detector that starts from a U-Net trained on the semantic variant of the same data).
"""

from __future__ import annotations

import torch
from detectron2.config import CfgNode
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone

from .unet import UNetEncoder, build_unet_backbone, build_up_steps, expand


class UNetPyramid(Backbone):
    """A ``UNetEncoder`` and the expansive path over it; features ``up0..up{D-1}`` and ``level{D}``.

    As Detectron2's ``FPN`` takes its bottom-up network, this takes the encoder; the up steps
    use the encoder's own upsampling mode and norm (the bottleneck's width depends on the mode).
    """

    def __init__(self, encoder: UNetEncoder):
        super().__init__()
        self.encoder = encoder
        encoder_shape = encoder.output_shape()  # levels by stride, as the up steps need them
        self._levels = list(encoder_shape)
        self.ups, channels = build_up_steps(
            [spec.channels for spec in encoder_shape.values()], bilinear=encoder.bilinear, norm=encoder.norm
        )
        depth = len(self._levels) - 1
        self._out_features = [f"up{i}" for i in range(depth)] + [f"level{depth}"]
        self._out_feature_channels = dict(zip(self._out_features, channels))
        self._out_feature_strides = {name: 2**i for i, name in enumerate(self._out_features)}

    @property
    def size_divisibility(self) -> int:
        return self.encoder.size_divisibility

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        levels = self.encoder(x)
        outputs = expand(self.ups, [levels[f] for f in self._levels])
        return dict(zip(self._out_features, outputs))


@BACKBONE_REGISTRY.register()
def build_unet_pyramid_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> UNetPyramid:
    """``MODEL.BACKBONE.NAME: build_unet_pyramid_backbone``: ``build_unet_backbone``'s encoder
    (the same ``MODEL.UNET`` keys and width, so a U-Net trained with them loads) and its up steps."""
    return UNetPyramid(build_unet_backbone(cfg, input_shape))


def unet_pyramid_weights(unet_state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """A ``UNet`` state dict as ``UNetPyramid`` weights under ``backbone.``.

    ``backbone.X`` becomes ``backbone.encoder.X`` and ``sem_seg_head.ups.X`` becomes
    ``backbone.ups.X``; returns them and the names left out (the classifier, pixel
    statistics). Raises ``ValueError`` when the state dict is not a U-Net's.
    """
    converted: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    for name, tensor in unet_state.items():
        if name.startswith("backbone.level"):
            converted["backbone.encoder." + name[len("backbone.") :]] = tensor
        elif name.startswith("sem_seg_head.ups."):
            converted["backbone." + name[len("sem_seg_head.") :]] = tensor
        else:
            dropped.append(name)
    if not any(k.startswith("backbone.encoder.") for k in converted) or not any(
        k.startswith("backbone.ups.") for k in converted
    ):
        raise ValueError(
            "expected the weights of a U-Net (MODEL.META_ARCHITECTURE UNet: parameters named "
            f"backbone.level*, sem_seg_head.ups.*), got names like {sorted(unet_state)[:4]}"
        )
    return converted, dropped
