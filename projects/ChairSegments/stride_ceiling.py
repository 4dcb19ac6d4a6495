#!/usr/bin/env python
"""The IoU ceiling of a model whose output has stride ``s``, on a semantic Chair Segments split.

The best a prediction made on a grid of stride ``s`` and upsampled bilinearly can do (issue 18):
the ground truth averaged over ``s x s`` cells (the exact chair fraction of each cell),
upsampled bilinearly back to the image size (``align_corners=False``, as the models'
``F.interpolate`` does) and thresholded at 0.5, scored with the paper's per-image IoU/Dice
(``BinarySegmentationScores``: images with more than 5 chair pixels). A model that upsamples its
input first (e.g. Mask R-CNN at 64 -> 128) runs at stride ``s / scale`` of the original image.

    python projects/ChairSegments/stride_ceiling.py --data-root /path/ChairSegments --strides 1 2 4 8 16 32
    python projects/ChairSegments/stride_ceiling.py --dataset chair_segments_64_val --json out.json

Prints one line per stride (IoU, Dice in %) and with ``--json`` writes them to a file.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

from semseg_heads.data import register_chair_segments
from semseg_heads.evaluation.paper_metrics import BinarySegmentationScores


def stride_limited(gt: np.ndarray, stride: int, scale: int = 1) -> np.ndarray:
    """``gt`` (boolean HxW) as seen by a stride-``stride`` output of a model fed the image
    upscaled ``scale`` times: cell averages of the (nearest-upscaled) ground truth, ceil-padded
    with the edge cells' own pixels only, upsampled bilinearly to the model's input size, resized
    bilinearly back to HxW (Detectron2's ``sem_seg_postprocess``) and thresholded at 0.5."""
    if stride < 1 or scale < 1:
        raise ValueError(f"stride and scale must be >= 1, got {stride} and {scale}")
    if stride == 1:
        return gt.astype(bool)
    t = torch.from_numpy(gt.astype(np.float32))[None, None]
    h, w = gt.shape
    if scale > 1:
        t = F.interpolate(t, scale_factor=scale, mode="nearest")
    # ceil_mode + count_include_pad=False: a partial edge cell averages the pixels it has.
    cells = F.avg_pool2d(t, stride, stride, ceil_mode=True, count_include_pad=False)
    up = F.interpolate(cells, size=t.shape[-2:], mode="bilinear", align_corners=False)
    if scale > 1:
        up = F.interpolate(up, size=(h, w), mode="bilinear", align_corners=False)
    return (up[0, 0] > 0.5).numpy()


def stride_ceilings(
    records: Iterable[dict], strides: Iterable[int], object_id: int = 1, scale: int = 1
) -> dict[int, dict]:
    """``{stride: BinarySegmentationScores.summary()}`` over the records' ``sem_seg_file_name``
    label maps (``object_id`` is the chair label) for a model fed ``scale``-times upscaled images."""
    scores = {int(s): BinarySegmentationScores() for s in strides}
    for r in records:
        gt = np.asarray(Image.open(r["sem_seg_file_name"])) == object_id
        for s, acc in scores.items():
            acc.add(stride_limited(gt, s, scale), gt)
    return {s: acc.summary() for s, acc in scores.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", default=None, help="folder holding Chair064/<split> (registers it)")
    p.add_argument("--dataset", default="chair_segments_64_val", help="a registered semantic dataset")
    p.add_argument("--strides", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    p.add_argument(
        "--input-scales",
        type=int,
        nargs="+",
        default=[1],
        help="input upscaling factors (INPUT.MIN_SIZE_TEST / 64): a table per factor",
    )
    p.add_argument("--json", default=None, help="also write the results to this file")
    args = p.parse_args(argv)
    if args.data_root:
        register_chair_segments(args.data_root)
    if args.dataset not in DatasetCatalog.list():
        print(f"error: dataset '{args.dataset}' is not registered (pass --data-root)", file=sys.stderr)
        return 2
    meta = MetadataCatalog.get(args.dataset)
    classes = meta.get("stuff_classes", None)
    if not classes or len(classes) != 2:
        print(f"error: --dataset '{args.dataset}' is not a two-class semantic dataset", file=sys.stderr)
        return 2
    object_id = 1 if classes[0].lower() == "background" else 0
    records = DatasetCatalog.get(args.dataset)
    out: dict[str, dict] = {}
    for scale in args.input_scales:
        res = stride_ceilings(records, args.strides, object_id, scale)
        for s, r in res.items():
            scored = r["num_scored_images"]
            line = f"input x{scale} stride {s:>3}: IoU {r['IoU']:.1f}  Dice {r['Dice']:.1f}"
            print(f"{line}  ({scored} images scored)")
        out[str(scale)] = {str(s): r for s, r in res.items()}
    if args.json:
        with open(args.json, "w") as f:
            # "ceilings": input scale 1, the layout of the first version of this file.
            json.dump({"dataset": args.dataset, "ceilings": out[str(args.input_scales[0])],
                       "by_input_scale": out}, f, indent=1)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
