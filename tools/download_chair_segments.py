#!/usr/bin/env python
"""Download the official Chair Segments archives and unpack them safely.

    python tools/download_chair_segments.py              # Chair064 into $DETECTRON2_DATASETS/ChairSegments
    python tools/download_chair_segments.py --resolution 32 64 128
    python tools/download_chair_segments.py --url https://mirror/Chair064.zip --sha256 <hex>

Downloads with torch.hub (an interrupted download starts over), prints the archive's sha256,
refuses to replace existing data without --force and rejects archive members that would land
outside the target.
URLs: download_data.sh of the Chair Segments repository (chairseg.data.download).
"""

from __future__ import annotations

import argparse
import logging
import sys

from chairseg.data.download import (
    CorruptArchiveError,
    DownloadError,
    UnsafeArchiveError,
    download_chair_segments,
)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resolution", type=int, nargs="+", default=[64], choices=[32, 64, 128])
    p.add_argument("--root", default=None, help="target root (default: $DETECTRON2_DATASETS/ChairSegments)")
    p.add_argument("--url", default=None, help="download from this URL instead (one resolution only)")
    p.add_argument("--sha256", default=None, help="expected sha256 of the archive")
    p.add_argument("--force", action="store_true", help="replace existing Chair0XX data")
    p.add_argument("--keep-archive", action="store_true", help="keep the zip after unpacking")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.url and len(args.resolution) != 1:
        print("error: --url goes with exactly one --resolution", file=sys.stderr)
        return 2
    for res in args.resolution:
        try:
            result = download_chair_segments(
                res,
                args.root,
                url=args.url,
                sha256=args.sha256,
                force=args.force,
                keep_archive=args.keep_archive,
                progress=not args.no_progress,
            )
        except (DownloadError, CorruptArchiveError, UnsafeArchiveError, FileExistsError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        splits = ", ".join(f"{s}: {n} images" for s, n in result["splits"].items())
        print(f"unpacked into {result['target']} ({splits})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
