#!/usr/bin/env python
"""Training curves from a run's ``metrics.json`` (Detectron2's ``JSONWriter``) to a PNG.

Left: the losses over iterations; right: the evaluation metrics written during training
(``sem_seg/mIoU``, the paper's ``chair_segments/{Prec,IoU,Dice}``, COCO ``segm/AP``, ...)::

    tools/plot_metrics.py output/            # -> output/curves.png
    tools/plot_metrics.py output/metrics.json --output curves.png
"""

from __future__ import annotations

import argparse
import os
import sys

from chairseg.metrics_plot import plot_metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("metrics", help="a run's output folder or its metrics.json")
    parser.add_argument("--output", help="PNG to write (default: curves.png beside metrics.json)")
    parser.add_argument("--title", help="figure title")
    args = parser.parse_args(argv)
    path = os.path.join(args.metrics, "metrics.json") if os.path.isdir(args.metrics) else args.metrics
    if not os.path.isfile(path):
        print(f"error: '{path}' does not exist", file=sys.stderr)
        return 2
    out = args.output or os.path.join(os.path.dirname(path), "curves.png")
    print(plot_metrics(path, out, args.title))
    return 0


if __name__ == "__main__":
    sys.exit(main())
