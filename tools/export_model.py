#!/usr/bin/env python
"""Export a semantic model to ONNX (default) or TorchScript, in the shape of Detectron2's
``tools/deploy/export_model.py``::

    tools/export_model.py --config-file configs/ChairSegments/unet.yaml --output export/ \\
        MODEL.WEIGHTS output/model_final.pth

Writes ``<output>/model.onnx`` (or ``model.ts``; ``--output`` may also name the file) and
``<file>.json`` describing the graph's input, output and pre-processing. Batch, height and
width are dynamic. The export is checked against PyTorch at three input sizes (max |logit
difference| and argmax agreement >= 99.9%); the figures are printed and stored in the JSON.

Weights in a run folder bring that run's model keys and class names (its ``config.yaml``;
without ``--config-file`` it is the config), and a line says so; the JSON's class names are
the run's dataset's.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from detectron2.utils.logger import setup_logger

import semseg_heads  # noqa: F401  (registers models and datasets)
from semseg_heads.config import config_for_weights
from semseg_heads.deploy import ExportCheckError, ExportError, export_model

logger = logging.getLogger("semseg_heads.export")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".ts"}


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config-file", default="", metavar="FILE",
        help="path to config file (default: the config.yaml beside MODEL.WEIGHTS, its run folder's)",
    )  # fmt: skip
    parser.add_argument("--output", required=True, help="output folder (model.onnx / model.ts) or file name")
    parser.add_argument("--format", choices=sorted(SUFFIXES), default="onnx")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument(
        "opts", default=[], nargs=argparse.REMAINDER, help="config overrides, KEY VALUE pairs"
    )
    return parser


def output_file(output: str, fmt: str) -> str:
    if output.endswith((".onnx", ".ts", ".pt")):
        return output
    return os.path.join(output, "model" + SUFFIXES[fmt])


def main(argv: list[str] | None = None) -> int:
    setup_logger(name="semseg_heads")
    args = get_parser().parse_args(argv)
    try:
        # MODEL.WEIGHTS in a run folder: that run's model keys and class names, said so.
        cfg, run = config_for_weights(args.config_file, args.opts)
    except (FileNotFoundError, ValueError) as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    if run is not None:
        print(run.message(), flush=True)
    cfg.MODEL.DEVICE = "cpu"  # the exported graph is device-neutral; tracing on the CPU is enough
    cfg.freeze()
    path = output_file(args.output, args.format)
    try:
        config_file = args.config_file or (run.path if run else "")
        report = export_model(cfg, path, args.format, config_file=config_file, overwrite=args.overwrite)
    except (ExportError, ExportCheckError, FileExistsError) as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    print(f"wrote {path} and {path}.json ({report.exporter})")
    for c in report.checks:
        print(
            f"  check batch {c.batch} {c.height}x{c.width}: max |logit diff| {c.max_abs_diff:.3g} "
            f"(largest logit {c.max_abs_logit:.3g}), argmax agreement {c.argmax_agreement:.4%}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
