#!/usr/bin/env python
"""Check a dataset folder and print every problem at once (exit status 1 when there are any).

    python tools/validate_dataset.py --chair-segments datasets/ChairSegments
    python tools/validate_dataset.py --images data/images --masks data/masks
    python tools/validate_dataset.py --images data/img --masks data/ann --palette 0,0,0:255,0,0:0,255,0

Reports images without masks, masks without images, duplicate stems, size mismatches,
unreadable, truncated and zero-byte files, images Detectron2 cannot read as shown (float,
32-bit), non-integer ids (Chair Segments), RGB masks without a palette, implausible value sets
(what mask_format "auto" refuses: stray values, more than 32 inferred classes, values above 254),
folders mixing 0/1 and 0/255 masks, datasets whose masks all read as one class, mask values that
map to no class and empty folders, then a summary line with the count per kind. For a folder it
first prints what registration would decide: how masks are read, the classes, 16-bit images
read through 8-bit copies. The mask options are train_net.py's (--dataset).
"""

from __future__ import annotations

import argparse
import sys

from semseg_heads.data.cli import add_mask_arguments, mask_options
from semseg_heads.data.validate import validate_chair_segments, validate_folder_dataset


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chair-segments", metavar="PATH", help="Chair Segments root, Chair0XX or split folder")
    p.add_argument("--images", help="folder of images (custom dataset)")
    p.add_argument("--masks", help="folder of masks (custom dataset)")
    add_mask_arguments(p.add_argument_group("how masks are read (as train_net.py's --dataset)"))
    return p


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if bool(args.chair_segments) == bool(args.images or args.masks):
        print("error: give either --chair-segments PATH or --images DIR --masks DIR", file=sys.stderr)
        return 2
    try:
        if args.chair_segments:
            report = validate_chair_segments(args.chair_segments)
        else:
            if not (args.images and args.masks):
                print("error: --images and --masks go together", file=sys.stderr)
                return 2
            report = validate_folder_dataset(args.images, args.masks, **mask_options(args))
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report.format())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
