#!/usr/bin/env python
"""Generate procedural Chair Segments in the official layout (chairseg.data.synthetic).

    python tools/generate_chair_segments.py                       # 2000 train + 500 val at 64x64
    python tools/generate_chair_segments.py --root /tmp/cs --train 10000 --val 0
    python tools/generate_chair_segments.py --backgrounds mixed   # half on photos (scikit-image)

Writes ``<root>/Chair064/<split>/{image,mask}/<id>.png``; the default root is
``$DETECTRON2_DATASETS/ChairSegments`` (``./datasets/ChairSegments``), where the builtin
``chair_segments_64_{train,val}`` datasets look. Prints the images/s figure it reached.
"""

from __future__ import annotations

import argparse
import logging
import sys

from chairseg.data.synthetic import BACKGROUND_CHOICES, generate_chair_segments
from semseg_heads.data.chair_segments import builtin_root


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=None, help="dataset root (default: $DETECTRON2_DATASETS/ChairSegments)")
    p.add_argument("--resolution", type=int, default=64, help="image side in pixels (folder Chair{res:03d})")
    p.add_argument("--train", type=int, default=2000, help="training images")
    p.add_argument("--val", type=int, default=500, help="validation images")
    p.add_argument("--test", type=int, default=0, help="test images (none by default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None, help="processes (default: usable cores, at most 8)")
    p.add_argument("--backgrounds", choices=BACKGROUND_CHOICES, default="procedural")
    p.add_argument("--photo-prob", type=float, default=0.5, help="share of photo backgrounds with 'mixed'")
    p.add_argument("--background-dir", default=None, help="folder of pictures for photos/mixed")
    p.add_argument("--overwrite", action="store_true", help="replace splits made with other settings")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    splits = {s: n for s, n in (("train", args.train), ("val", args.val), ("test", args.test)) if n > 0}
    root = args.root or builtin_root()
    try:
        results = generate_chair_segments(
            root,
            args.resolution,
            splits,
            seed=args.seed,
            backgrounds=args.backgrounds,
            photo_prob=args.photo_prob,
            background_dir=args.background_dir,
            workers=args.workers,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
    except (FileExistsError, ImportError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    written = sum(r.get("written", 0) for r in results.values())
    seconds = sum(r["seconds"] for r in results.values())
    for split, r in results.items():
        print(f"{split}: {r['status']}, {r['count']} images in {r['dir']}")
    if written:
        workers = max(r.get("workers", 1) for r in results.values())
        print(
            f"generated {written} images at {args.resolution}x{args.resolution} in {seconds:.1f} s "
            f"({written / seconds:.0f} images/s, {workers} worker(s))"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
