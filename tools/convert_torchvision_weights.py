#!/usr/bin/env python
"""Convert a torchvision ImageNet checkpoint (local .pth) into a checkpoint for MODEL.WEIGHTS.

    python tools/convert_torchvision_weights.py vgg16-397923af.pth vgg16_semseg.pth
    python tools/convert_torchvision_weights.py resnet50-0676ba61.pth r50_semseg.pth
    python tools/train_net.py --config-file configs/ChairSegments/fcn8s.yaml MODEL.WEIGHTS vgg16_semseg.pth

VGG16 / VGG16-BN map onto ``build_vgg16_backbone`` (fc6/fc7 "convolutionalised" as in FCN),
ResNets onto ``build_dilated_resnet_backbone`` (with ``MODEL.RESNETS.STRIDE_IN_1X1 False``, as
the configs set). Keys are written under ``backbone.`` so the whole-model checkpointer loads
them by exact name; heads start from their own initialisation. The classifier's last layer is
dropped and listed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from semseg_heads.modeling.torchvision_weights import (
    convert_torchvision_state_dict,
    load_state_dict_file,
    save_detectron2_checkpoint,
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("input", help="torchvision state dict (.pth)")
    parser.add_argument("output", help="checkpoint to write (.pth), for MODEL.WEIGHTS")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument(
        "--vgg-norm",
        choices=("auto", "BN", "none"),
        default="auto",
        help="VGG only: the target backbone's MODEL.VGG.NORM. auto: as the source (vgg16 -> none, "
        "vgg16_bn -> BN). BN for DeconvNet from plain vgg16 (identity BNs); none folds a source BN.",
    )
    parser.add_argument("--prefix", default="backbone.", help="prefix of every key (default: backbone.)")
    args = parser.parse_args(argv)

    vgg_norm = {"auto": None, "BN": True, "none": False}[args.vgg_norm]
    try:
        state = load_state_dict_file(args.input)
        converted, dropped, arch = convert_torchvision_state_dict(state, args.prefix, vgg_norm)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        print(f"error: {args.input}: {e}", file=sys.stderr)
        return 1
    try:
        save_detectron2_checkpoint(converted, args.output, overwrite=args.overwrite)
    except OSError as e:  # FileExistsError included
        print(f"error: {args.output}: {e}", file=sys.stderr)
        return 1
    print(f"{args.input}: {arch}, {len(converted)} tensors -> {args.output}")
    if dropped:
        print(f"not converted (no counterpart in the backbone): {', '.join(dropped)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
