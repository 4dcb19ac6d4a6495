"""Inference at any image size: the whole image at native resolution, or overlapping tiles.

Detectron2's ``SemanticSegmentor`` sees the image its caller resized to
``INPUT.MIN_SIZE_TEST`` (``TEST.INFERENCE_MODE "resize"``, the default). The two other modes
take the image as loaded (``test_augmentations`` drops that resize in the test loader and the
predictors), rescale it by ``TEST.SLIDING_WINDOW.SCALE`` and then

* ``"whole"``: run the network once on the whole image;
* ``"slide"``: run it on ``TILE_SIZE`` x ``TILE_SIZE`` tiles ``STRIDE`` apart (the last tile of a
  row or column is shifted back to end at the border, as mmsegmentation's ``slide_inference``
  does) and blend the tiles' logits where they overlap: ``"average"`` (each pixel the mean of the
  tiles covering it) or ``"gaussian"`` (weights falling off from the tile centre, sigma 1/8 of
  the tile, as nnU-Net's sliding window does, so pixels near a tile's border, which saw the
  least context, count least).

The activations are those of one tile (times ``BATCH_SIZE`` tiles per forward); only the
image, the logits and the weights are image-sized. ``infer_logits`` is the one implementation:
the eager models (``native_inference``) and ``ONNXPredictor`` (a graph that runs one tile) both
call it with their own ``run`` function.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import detectron2.data.transforms as T
import torch
from detectron2.config import CfgNode
from detectron2.modeling.postprocessing import sem_seg_postprocess
from torch.nn import functional as F

__all__ = [
    "INFERENCE_MODES",
    "BLENDS",
    "InferenceSettings",
    "tile_starts",
    "sliding_window_logits",
    "infer_logits",
    "pixels_to_logits",
    "native_inference",
    "test_augmentations",
]

INFERENCE_MODES = ("resize", "whole", "slide")
BLENDS = ("average", "gaussian")

TileRunner = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class InferenceSettings:
    """``TEST.INFERENCE_MODE`` and ``TEST.SLIDING_WINDOW.*`` (see the module doc)."""

    mode: str = "resize"
    tile_size: int = 512
    stride: int = 341
    scale: float = 1.0
    blend: str = "average"
    batch_size: int = 1

    def __post_init__(self) -> None:
        if self.mode not in INFERENCE_MODES:
            raise ValueError(f"TEST.INFERENCE_MODE must be one of {INFERENCE_MODES}, got {self.mode!r}")
        if self.tile_size < 1:
            raise ValueError(f"TEST.SLIDING_WINDOW.TILE_SIZE must be >= 1, got {self.tile_size}")
        if not 1 <= self.stride <= self.tile_size:
            raise ValueError(
                f"TEST.SLIDING_WINDOW.STRIDE must be between 1 and TILE_SIZE ({self.tile_size}) so "
                f"that the tiles cover the image, got {self.stride}"
            )
        if not self.scale > 0:
            raise ValueError(f"TEST.SLIDING_WINDOW.SCALE must be > 0, got {self.scale}")
        if self.blend not in BLENDS:
            raise ValueError(f"TEST.SLIDING_WINDOW.BLEND must be one of {BLENDS}, got {self.blend!r}")
        if self.batch_size < 1:
            raise ValueError(f"TEST.SLIDING_WINDOW.BATCH_SIZE must be >= 1, got {self.batch_size}")

    @classmethod
    def from_config(cls, cfg: CfgNode) -> InferenceSettings:
        sw = cfg.TEST.SLIDING_WINDOW
        return cls(
            mode=cfg.TEST.INFERENCE_MODE,
            tile_size=int(sw.TILE_SIZE),
            stride=int(sw.STRIDE),
            scale=float(sw.SCALE),
            blend=sw.BLEND,
            batch_size=int(sw.BATCH_SIZE),
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def test_augmentations(cfg: CfgNode) -> list[T.Augmentation]:
    """The resize in front of the model at test time: Detectron2's ``ResizeShortestEdge`` by
    ``INPUT.MIN_SIZE_TEST`` in mode ``"resize"``, none in ``"whole"`` / ``"slide"`` (the model
    takes the image as loaded and rescales it by ``TEST.SLIDING_WINDOW.SCALE`` itself)."""
    if InferenceSettings.from_config(cfg).mode != "resize":
        return []
    return [T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST], cfg.INPUT.MAX_SIZE_TEST)]


def tile_starts(size: int, tile: int, stride: int) -> list[int]:
    """First pixel of each tile along one side: ``stride`` apart, the last one shifted back so
    that it ends at the border; one tile (of the whole side) when ``size <= tile``."""
    if size <= tile:
        return [0]
    count = math.ceil((size - tile) / stride) + 1
    return [min(i * stride, size - tile) for i in range(count)]


def _gaussian_weights(height: int, width: int, tile: int, device: torch.device) -> torch.Tensor:
    def axis(n: int) -> torch.Tensor:
        x = torch.arange(n, device=device, dtype=torch.float32) - (n - 1) / 2
        return torch.exp(-0.5 * (x / (tile / 8)) ** 2)

    w = axis(height)[:, None] * axis(width)[None, :]
    # nnU-Net's floor: the corners of a tile still count a little, so every pixel has weight > 0.
    return (w / w.max()).clamp_(min=1e-3)


def sliding_window_logits(
    run: TileRunner,
    image: torch.Tensor,
    tile: int,
    stride: int,
    blend: str = "average",
    batch_size: int = 1,
) -> torch.Tensor:
    """Logits ``(1, C, H, W)`` of ``image`` ``(1, 3, H, W)`` from tiles (see the module doc).

    ``run`` maps a batch of tiles ``(n, 3, h, w)`` to their logits ``(n, C, h, w)``.
    """
    if image.dim() != 4 or image.shape[0] != 1:
        raise ValueError(f"sliding_window_logits takes one image (1, 3, H, W), got {tuple(image.shape)}")
    height, width = image.shape[-2:]
    th, tw = min(tile, height), min(tile, width)
    boxes = [(y, x) for y in tile_starts(height, tile, stride) for x in tile_starts(width, tile, stride)]
    if blend == "gaussian":
        weight = _gaussian_weights(th, tw, tile, image.device)
    elif blend == "average":
        weight = torch.ones((th, tw), device=image.device)
    else:
        raise ValueError(f"blend must be one of {BLENDS}, got {blend!r}")
    logits: torch.Tensor | None = None
    total = torch.zeros((height, width), device=image.device)
    for i in range(0, len(boxes), batch_size):
        chunk = boxes[i : i + batch_size]
        tiles = torch.cat([image[:, :, y : y + th, x : x + tw] for y, x in chunk])
        out = run(tiles).float()
        if logits is None:
            logits = torch.zeros((1, out.shape[1], height, width), device=image.device)
        for (y, x), o in zip(chunk, out):
            logits[0, :, y : y + th, x : x + tw] += o * weight
            total[y : y + th, x : x + tw] += weight
    assert logits is not None  # at least one tile
    return logits / total


def infer_logits(run: TileRunner, image: torch.Tensor, settings: InferenceSettings) -> torch.Tensor:
    """Logits ``(1, C, H, W)`` of ``image`` ``(1, 3, H, W)`` in mode ``"whole"`` or ``"slide"``
    at ``settings.scale`` (bilinear, logits resized back to ``H x W``)."""
    if settings.mode not in ("whole", "slide"):
        raise ValueError(f"infer_logits runs modes 'whole' and 'slide', got {settings.mode!r}")
    height, width = image.shape[-2:]
    x = image
    if settings.scale != 1.0:
        size = (max(1, round(height * settings.scale)), max(1, round(width * settings.scale)))
        x = F.interpolate(image, size=size, mode="bilinear", align_corners=False)
    if settings.mode == "whole":
        logits = run(x).float()
    else:
        logits = sliding_window_logits(
            run, x, settings.tile_size, settings.stride, settings.blend, settings.batch_size
        )
    if logits.shape[-2:] != (height, width):
        logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
    return logits


def pixels_to_logits(model: Any, images: torch.Tensor) -> torch.Tensor:
    """What a ``SemanticSegmentor`` does around its backbone and head, on a batch of same-sized
    images: ``(N, 3, H, W)`` float pixels -> logits ``(N, C, H, W)``.

    Normalisation by ``pixel_mean/std``, zero padding after it (as ``ImageList.from_tensors``
    pads) to ``backbone.size_divisibility``, and the crop back to ``H x W``. Written with
    symbolic sizes so that an exported graph (``SemSegExportWrapper``) pads any input size.
    """
    height, width = images.shape[-2], images.shape[-1]
    x = (images - model.pixel_mean) / model.pixel_std
    d = int(model.backbone.size_divisibility)
    if d > 1:
        x = F.pad(x, (0, (d - width % d) % d, 0, (d - height % d) % d), value=0.0)
    logits, _ = model.sem_seg_head(model.backbone(x), None)
    return logits[:, :, :height, :width]


def native_inference(
    model: Any, batched_inputs: list[dict[str, Any]], settings: InferenceSettings
) -> list[dict[str, torch.Tensor]]:
    """``SemanticSegmentor.forward``'s inference in mode ``"whole"`` / ``"slide"``: each input on
    its own (memory follows one image's tiles), ``{"sem_seg": (C, height, width)}`` logits out,
    resized to the input's ``height``/``width`` as ``sem_seg_postprocess`` does."""

    def run(x: torch.Tensor) -> torch.Tensor:
        return pixels_to_logits(model, x)

    results = []
    for item in batched_inputs:
        image = item["image"].to(model.device).float()[None]
        logits = infer_logits(run, image, settings)[0]
        size = tuple(image.shape[-2:])
        height, width = item.get("height", size[0]), item.get("width", size[1])
        results.append({"sem_seg": sem_seg_postprocess(logits, size, height, width)})
    return results
