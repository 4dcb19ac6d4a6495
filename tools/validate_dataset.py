#!/usr/bin/env python
"""Check a dataset folder and print every problem at once (exit status 1 when there are any).

    python tools/validate_dataset.py --chair-segments datasets/ChairSegments
    python tools/validate_dataset.py --images data/images --masks data/masks
    python tools/validate_dataset.py --images data/img --masks data/ann --palette 0,0,0 255,0,0 0,255,0

Reports images without masks, masks without images, duplicate stems, size mismatches,
unreadable, truncated and zero-byte files, non-integer ids (Chair Segments), RGB masks without
a palette, implausible value sets (what mask_format "auto" refuses: stray values, more than 32
inferred classes, values above 254), mask values that map to no class and empty folders, then a
summary line with the count per kind. Options match semseg_heads.data.register_folder_dataset.
"""

from __future__ import annotations

import argparse
import sys

from semseg_heads.data.validate import validate_chair_segments, validate_folder_dataset


def _color(text: str) -> tuple[int, int, int]:
    parts = [int(p) for p in text.split(",")]
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"palette colours are r,g,b; got {text!r}")
    return tuple(parts)


def _value_map(items: list[str] | None) -> dict[int, int] | None:
    if not items:
        return None
    try:
        return {int(k): int(v) for k, v in (item.split("=") for item in items)}
    except ValueError:
        raise ValueError(f"--value-map takes VALUE=ID pairs of integers, got {items}") from None


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chair-segments", metavar="PATH", help="Chair Segments root, Chair0XX or split folder")
    p.add_argument("--images", help="folder of images (custom dataset)")
    p.add_argument("--masks", help="folder of masks (custom dataset)")
    p.add_argument("--classes", nargs="+", default=None, help="class names in id order")
    p.add_argument("--palette", nargs="+", type=_color, default=None, help="r,g,b per class, in id order")
    p.add_argument("--ignore-label", type=int, default=None)
    p.add_argument("--mask-format", default="auto", choices=["auto", "class_ids", "palette", "binary"])
    p.add_argument("--threshold", type=float, default=0.4, help="binary masks: foreground above this")
    p.add_argument("--mask-suffix", default="", help="mask stem = image stem + suffix (e.g. _mask)")
    p.add_argument(
        "--value-map", nargs="+", default=None, metavar="VALUE=ID", help="map mask values to class ids"
    )
    return p.parse_args(argv)


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
            report = validate_folder_dataset(
                args.images,
                args.masks,
                classes=args.classes,
                palette=args.palette,
                ignore_label=args.ignore_label,
                mask_format=args.mask_format,
                threshold=args.threshold,
                mask_suffix=args.mask_suffix,
                value_map=_value_map(args.value_map),
            )
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report.format())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
