"""The exportable form of a semantic segmentor: one image tensor in, logits out.

Detectron2's ``SemanticSegmentor.forward`` takes a list of dicts and returns a list of dicts,
which no exporter can flatten by itself (Detectron2's ``TracingAdapter`` flattens such
structures generically). A semantic model needs less: ``SemSegExportWrapper`` takes a batch
``(N, 3, H, W)`` of float pixels in ``INPUT.FORMAT`` order, 0-255, and does in the graph what
``SemanticSegmentor`` does around its backbone and head: normalisation by
``MODEL.PIXEL_MEAN/STD``, zero padding (after normalisation, as ``ImageList.from_tensors``
pads) to the backbone's ``size_divisibility``, and the crop back to ``H x W`` that
``sem_seg_postprocess`` makes. Resizing to ``INPUT.MIN_SIZE_TEST`` stays outside the graph, as
it stays outside the model in Detectron2's ``DefaultPredictor``.
"""

from __future__ import annotations

import torch
from detectron2.modeling import SemanticSegmentor
from torch import nn

from semseg_heads.modeling.sliding_window import pixels_to_logits


class SemSegExportWrapper(nn.Module):
    """``(N, 3, H, W)`` float pixels (0-255, ``INPUT.FORMAT`` order) -> logits ``(N, C, H, W)``.

    Holds the model's own modules (no copy): the numbers are those of ``model.eval()``.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        if not isinstance(model, SemanticSegmentor):
            raise TypeError(
                f"export handles semantic segmentors (Detectron2's SemanticSegmentor and semseg_heads' "
                f"meta-architectures); got {type(model).__name__}"
            )
        self.model = model
        self.size_divisibility = int(model.backbone.size_divisibility)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return pixels_to_logits(self.model, image)
