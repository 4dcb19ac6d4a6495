#!/usr/bin/env python
"""The effective receptive field of a trained semantic model's output cells, in input pixels.

Luo et al., "Understanding the Effective Receptive Field in Deep Convolutional Neural
Networks" (NeurIPS 2016, Sec. 2): the input pixels an output unit depends on are weighted by
the gradient of that unit with respect to them, and this weight concentrates in a region far
smaller than the theoretical receptive field. Here the unit is the centre pixel of the model's
class scores, as its ``SemanticSegmentor`` computes them before resizing (``pixels_to_logits``:
normalised, padded, the head's logits cropped back to the image), its every class score in
turn; each image's absolute gradient with respect to the input pixels, summed over colour
channels and classes, is normalised to a mass of one and averaged over the val images. The
radii (Chebyshev, from that pixel's centre in input
pixels) holding 50 / 90 / 99% of that mass are reported beside half the input's side. A mass
spread evenly over the image would put them at 71 / 95 / 99.5% of the half side (the square
root of the share), so radii near those mean the cell draws on the whole image. ``--mass``
saves the averaged field (.npy); ``--against`` compares with one saved before (e.g. a context
module's with its front-end's): the share of the mass that moved.

Section 5e of RECIPES.md reads the context modules' zero gain from the dilated front-end's
theoretical receptive field (380 px) covering the 128- and 192-px inputs; this measures it.

    python projects/ChairSegments/receptive_field.py \\
        --weights /work/runs/r37/d128/dilated_frontend_s1/model_final.pth --images 50 \\
        --json erf.json --mass erf.npy [--against other.npy] [KEY VALUE ...]

The model's config is its run folder's ``config.yaml`` (or ``--config-file``); images come
through ``Trainer.build_test_loader`` at the config's test size, in fp32.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np
import torch
from torch import nn

from semseg_heads.checkpoint import SafeDetectionCheckpointer
from semseg_heads.config import config_for_weights
from semseg_heads.engine import Trainer
from semseg_heads.modeling.sliding_window import pixels_to_logits

QUANTILES = (0.5, 0.9, 0.99)


def centre_pixel_gradient(model: nn.Module, image: torch.Tensor) -> tuple[np.ndarray, tuple[float, float]]:
    """|d score / d pixel| of the centre pixel of the model's scores for one CHW image, summed
    over colour channels and classes and normalised to a sum of one (H x W), and that pixel's
    centre (y, x)."""
    x = image.detach().float().clone().requires_grad_(True)
    scores = pixels_to_logits(model, x[None])
    _, num_classes, h, w = scores.shape
    ci, cj = h // 2, w // 2
    mass = torch.zeros(x.shape[-2:], dtype=torch.float64)
    for c in range(num_classes):
        (grad,) = torch.autograd.grad(scores[0, c, ci, cj], x, retain_graph=c + 1 < num_classes)
        mass += grad.abs().sum(dim=0).double()
    total = float(mass.sum())
    if total <= 0:
        raise ValueError("the centre pixel's scores do not depend on the input (zero gradient)")
    return (mass / total).numpy(), (ci + 0.5, cj + 0.5)


def mass_radii(mass: np.ndarray, centre: tuple[float, float], quantiles=QUANTILES) -> dict[float, float]:
    """The smallest Chebyshev radius around ``centre`` (pixel centres at i + 0.5) holding each
    quantile of ``mass`` (whose sum is one)."""
    ys, xs = np.indices(mass.shape)
    dist = np.maximum(np.abs(ys + 0.5 - centre[0]), np.abs(xs + 0.5 - centre[1])).ravel()
    order = np.argsort(dist, kind="stable")
    nearest_first = dist[order]
    cumulative = np.cumsum(mass.ravel()[order])
    return {
        q: float(nearest_first[min(np.searchsorted(cumulative, q * cumulative[-1]), dist.size - 1)])
        for q in quantiles
    }


def mass_moved(mass: np.ndarray, reference: np.ndarray) -> float:
    """The share of the gradient mass that lies elsewhere than in ``reference`` (both sum to one):
    half their L1 distance, 0 for the same field, 1 for fields that do not overlap."""
    if mass.shape != reference.shape:
        raise ValueError(f"fields of different sizes: {mass.shape} and {reference.shape}")
    return float(np.abs(mass - reference).sum() / 2)


def effective_receptive_field(model: nn.Module, inputs: list[dict[str, Any]]) -> dict[str, Any]:
    """The mean normalised gradient mass over ``inputs`` (Detectron2 input dicts) and its radii."""
    total, centre = None, None
    for d in inputs:
        mass, c = centre_pixel_gradient(model, d["image"].to(model.pixel_mean.device))
        if total is not None and mass.shape != total.shape:
            raise ValueError(
                f"images of different sizes ({mass.shape} and {total.shape}); set INPUT.MIN/MAX_SIZE_TEST"
            )
        total = mass if total is None else total + mass
        centre = c
    if total is None:
        raise ValueError("no images")
    total /= len(inputs)
    radii = mass_radii(total, centre)
    return {
        "images": len(inputs),
        "input_size": list(total.shape),
        "centre": list(centre),
        "radius": {f"{int(q * 100)}%": r for q, r in radii.items()},
        "half_side": min(total.shape) / 2,
        "mass": total,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--weights", required=True, help="a trained checkpoint (its run folder's config.yaml is used)"
    )
    p.add_argument("--config-file", default="", help="the model's config, where the run folder has none")
    p.add_argument("--images", type=int, default=50, help="val images, from the first")
    p.add_argument("--json", default=None, help="write the radii here")
    p.add_argument("--mass", default=None, help="save the averaged gradient mass (H x W) here, as .npy")
    p.add_argument("--against", default=None, help="a --mass file: print the share of the mass moved from it")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    args = p.parse_args(argv)
    if args.images <= 0:
        p.error(f"--images must be positive, got {args.images}")
    cfg, run = config_for_weights(args.config_file, ["MODEL.DEVICE", "cpu", *args.opts], args.weights)
    if run is not None:
        print(run.message())
    model = Trainer.build_model(cfg).eval()
    SafeDetectionCheckpointer.for_inference(model, cfg).load(args.weights)
    if not hasattr(model, "sem_seg_head"):
        raise SystemExit(f"{cfg.MODEL.META_ARCHITECTURE}: not a semantic model (no sem_seg_head)")
    inputs = []
    for batch in Trainer.build_test_loader(cfg, cfg.DATASETS.TEST[0]):
        inputs.extend(batch)
        if len(inputs) >= args.images:
            break
    res = effective_receptive_field(model, inputs[: args.images])
    r = res["radius"]
    print(
        f"{args.weights}: {res['images']} images of {res['input_size'][0]}x{res['input_size'][1]} px; "
        f"centre pixel's gradient mass within a radius of {r['50%']:.1f} / {r['90%']:.1f} / "
        f"{r['99%']:.1f} px (50 / 90 / 99%); half the side is {res['half_side']:.1f} px"
    )
    if args.against:
        reference = np.load(args.against)
        res["against"] = args.against
        res["moved_from_against"] = mass_moved(res["mass"], reference)
        print(f"{res['moved_from_against'] * 100:.1f}% of the mass lies elsewhere than in {args.against}")
    if args.mass:
        np.save(args.mass, res["mass"])
    if args.json:
        row = {k: v for k, v in res.items() if k != "mass"}
        with open(args.json, "w") as f:
            json.dump(dict(row, weights=args.weights), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
