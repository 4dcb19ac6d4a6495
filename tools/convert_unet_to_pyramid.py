#!/usr/bin/env python
"""Turn a trained U-Net checkpoint into the start of a detector on ``build_unet_pyramid_backbone``.

    python tools/convert_unet_to_pyramid.py output/unet/model_final.pth unet_pyramid_start.pth
    python tools/train_net.py --config-file configs/ChairSegments/recipes/mask_rcnn_unet_semstart.yaml \\
        MODEL.WEIGHTS unet_pyramid_start.pth

Both U-Net paths keep their trained weights (``backbone.*`` -> ``backbone.encoder.*``,
``sem_seg_head.ups.*`` -> ``backbone.ups.*``); the 1x1 classifier is dropped and listed, and
the detector's heads start from their own initialisation. The U-Net's ``MODEL.UNET`` keys and
``MODEL.SEMSEG_HEADS.WIDTH_SCALE`` must be the detector config's. ``--ema`` converts the moving
average of a run trained with ``MODEL_EMA.ENABLED`` instead of its trained weights.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from semseg_heads.checkpoint import CheckpointLoadError, load_checkpoint_file
from semseg_heads.model_ema import CHECKPOINT_KEY as EMA_KEY
from semseg_heads.modeling.backbone import unet_pyramid_weights
from semseg_heads.modeling.torchvision_weights import save_detectron2_checkpoint


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("input", help="a U-Net checkpoint (.pth) written by tools/train_net.py")
    parser.add_argument("output", help="checkpoint to write (.pth), for MODEL.WEIGHTS")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument(
        "--ema",
        action="store_true",
        help="convert the moving average of the weights (the checkpoint's 'model_ema', written by "
        "runs with MODEL_EMA.ENABLED) instead of the trained weights",
    )
    args = parser.parse_args(argv)
    try:
        data = load_checkpoint_file(args.input)
        if args.ema:
            ema = data.get(EMA_KEY) if isinstance(data, dict) else None
            if not isinstance(ema, dict) or not isinstance(ema.get("state"), dict):
                raise ValueError(
                    f"--ema: no '{EMA_KEY}' average in it (written only by runs with MODEL_EMA.ENABLED)"
                )
            state = ema["state"]
        else:
            state = data.get("model", data) if isinstance(data, dict) else None
        if not isinstance(state, dict):
            raise ValueError("expected a state dict or Detectron2's {'model': state_dict, ...}")
        converted, dropped = unet_pyramid_weights(state)
    except (OSError, ValueError, CheckpointLoadError) as e:
        print(f"error: {args.input}: {e}", file=sys.stderr)
        return 1
    try:
        save_detectron2_checkpoint(
            converted, args.output, author="semseg_heads UNet", overwrite=args.overwrite
        )
    except OSError as e:  # FileExistsError included
        print(f"error: {args.output}: {e}", file=sys.stderr)
        return 1
    source = f"the '{EMA_KEY}' average" if args.ema else "the trained weights"
    print(f"{args.input}: {len(converted)} tensors of {source} -> {args.output}")
    if not args.ema and isinstance(data, dict) and EMA_KEY in data:
        print(f"it also holds the '{EMA_KEY}' average of the weights; --ema converts that instead")
    if dropped:
        print(f"not converted (no counterpart in the backbone): {', '.join(dropped)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
