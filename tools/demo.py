#!/usr/bin/env python
"""Draw a trained model's predictions on images with Detectron2's ``Visualizer``
(``semseg_heads.utils.visualize``).

Semantic models (FCN, U-Net, DeconvNet, dilated) are drawn with ``draw_sem_seg`` and instance
models (Mask R-CNN) with ``draw_instance_predictions``, in the colours and class names of the
config's first test dataset::

    tools/demo.py --config-file configs/ChairSegments/unet.yaml --input photos/ img.jpg 'more/*.png' \\
        --output vis/ --opts MODEL.WEIGHTS output/model_final.pth MODEL.DEVICE cpu

Your own dataset gives the class names and colours (and NUM_CLASSES follows it)::

    tools/demo.py --config-file configs/ChairSegments/unet.yaml --input photos/ --output vis/ \
        --dataset my_val=data/val/images:data/val/masks --classes background,chair \
        --opts MODEL.WEIGHTS output/model_final.pth MODEL.DEVICE cpu

Writes one PNG per readable image (``<output>/<image name>.png``); an image that cannot be
read is reported by name, the others are still processed, and the exit status is then 1.
Without ``MODEL.WEIGHTS`` it refuses (``--random-weights`` draws an untrained model). Weights
in a run folder bring that run's model keys and class names (its ``config.yaml``; without
``--config-file`` it is the config), and a line says so::

    tools/demo.py --input photos/ --output vis/ --opts MODEL.WEIGHTS output/main_job/model_final.pth
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import sys
from collections.abc import Iterable

import torch
from detectron2.utils.logger import setup_logger
from PIL import Image

import semseg_heads  # noqa: F401  (registers models and datasets)
from semseg_heads.checkpoint import CheckpointLoadError
from semseg_heads.config import (
    config_for_weights,
    fixed_class_count_opts,
    get_semseg_heads_cfg,
    model_metadata,
)
from semseg_heads.data.cli import (
    add_dataset_arguments,
    check_datasets_registered,
    fit_num_classes,
    register_datasets_from_args,
)
from semseg_heads.data.labelmaps import read_image_as_shown
from semseg_heads.engine import Predictor
from semseg_heads.utils.io import IMAGE_EXTENSIONS
from semseg_heads.utils.visualize import draw_predictions, min_side_scale

logger = logging.getLogger("semseg_heads.demo")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config-file", default="", metavar="FILE",
        help="path to config file (default: the config.yaml beside MODEL.WEIGHTS, its run folder's)",
    )  # fmt: skip
    parser.add_argument(
        "--input", nargs="+", required=True, help="image files, glob patterns or folders (their images)"
    )
    parser.add_argument(
        "--output", required=True, help="folder for the PNGs (or a .png file name for one input)"
    )
    parser.add_argument(
        "--confidence-threshold",
        type=float,
        default=0.5,
        help="minimum score of the instances drawn (instance models)",
    )
    parser.add_argument(
        "--min-size",
        type=int,
        default=256,
        help="draw small images upscaled so their shorter side is at least this (0: as is)",
    )
    parser.add_argument(
        "--random-weights",
        action="store_true",
        help="draw an untrained model when MODEL.WEIGHTS is empty (otherwise an error)",
    )
    parser.add_argument(
        "--onnx", default="", metavar="FILE",
        help="run this exported model (tools/export_model.py) with ONNX Runtime instead of PyTorch",
    )  # fmt: skip
    add_dataset_arguments(parser)
    parser.add_argument(
        "--opts", default=[], nargs=argparse.REMAINDER, help="config overrides, KEY VALUE pairs"
    )
    return parser


def expand_inputs(inputs: Iterable[str]) -> list[str]:
    """Files named, matched by a glob, or inside a folder (its images, sorted)."""
    paths: list[str] = []
    for item in inputs:
        if os.path.isdir(item):
            paths += sorted(
                os.path.join(item, f) for f in os.listdir(item) if f.lower().endswith(IMAGE_EXTENSIONS)
            )
        elif glob.has_magic(item):
            matched = sorted(glob.glob(os.path.expanduser(item)))
            if not matched:
                raise FileNotFoundError(f"--input pattern '{item}' matches no file")
            paths += matched
        else:
            paths.append(item)  # a missing file is reported when it is read
    return paths


def metadata_name(cfg, args: argparse.Namespace) -> str | None:
    """The dataset whose class names and colours are drawn: the first ``--dataset``, else the
    config's first test dataset."""
    if getattr(args, "dataset", None):
        return args.dataset[0][0]
    return cfg.DATASETS.TEST[0] if len(cfg.DATASETS.TEST) else None


def setup_cfg(args: argparse.Namespace):
    register_datasets_from_args(args)
    opts = list(args.opts)
    if args.onnx and not args.config_file:  # the graph's JSON has the settings
        cfg, run = get_semseg_heads_cfg("", opts), None
    else:
        # MODEL.WEIGHTS in a run folder: that run's model keys (its config.yaml), said so.
        cfg, run = config_for_weights(args.config_file, opts)
    if run is not None:
        print(run.message(), flush=True)
        opts += fixed_class_count_opts(cfg)  # the trained model's class count stands
    if not cfg.MODEL.WEIGHTS and not args.random_weights and not args.onnx:
        raise ValueError(
            "MODEL.WEIGHTS is empty: the demo would draw an untrained model. Pass trained weights "
            "(--opts MODEL.WEIGHTS output/model_final.pth), or --random-weights to draw it anyway."
        )
    name = metadata_name(cfg, args)
    if name is not None and (args.dataset or run is None):
        check_datasets_registered([name], "--dataset" if args.dataset else "DATASETS.TEST")
        fit_num_classes(cfg, opts, [name])
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        logger.warning("No CUDA device: running on the CPU (MODEL.DEVICE cpu).")
        cfg.MODEL.DEVICE = "cpu"
    # Instance models: keep only instances above the threshold (Detectron2's demo does too).
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = args.confidence_threshold
    cfg.freeze()
    return cfg


def output_paths(inputs: list[str], output: str) -> list[str]:
    """``<output>/<stem>.png`` per input (a numeric suffix when two inputs share a name)."""
    if output.lower().endswith(".png") and not os.path.isdir(output):
        if len(inputs) != 1:
            raise ValueError(
                f"--output '{output}' is one PNG file but --input gives {len(inputs)} images; "
                "pass a folder as --output"
            )
        return [output]
    seen: dict[str, int] = {}
    paths = []
    for p in inputs:
        stem = os.path.splitext(os.path.basename(p))[0]
        n = seen.get(stem, 0)
        seen[stem] = n + 1
        paths.append(os.path.join(output, f"{stem}.png" if n == 0 else f"{stem}_{n}.png"))
    return paths


def run(args: argparse.Namespace) -> tuple[list[str], list[tuple[str, str]]]:
    """Draw every input; returns (PNGs written, [(unreadable input, reason)])."""
    cfg = setup_cfg(args)
    inputs = expand_inputs(args.input)
    if not inputs:
        raise FileNotFoundError(f"no images found in --input {args.input}")
    out_paths = output_paths(inputs, args.output)
    if args.onnx:  # same interface as Predictor; classes and colours from the graph's JSON
        from semseg_heads.deploy import ONNXPredictor

        predictor = ONNXPredictor(args.onnx)
        metadata = predictor.metadata
    else:
        predictor = Predictor(cfg)
        metadata = model_metadata(cfg, metadata_name(cfg, args))
    written, failed = [], []
    for path, out_path in zip(inputs, out_paths):
        try:
            image = read_image_as_shown(path, format="BGR")
        except (OSError, ValueError, SyntaxError) as e:  # PIL's errors for unreadable files
            logger.error(f"cannot read image '{path}': {e}")
            failed.append((path, str(e)))
            continue
        predictions = predictor(image)
        scale = min_side_scale(image.shape, args.min_size)
        drawn = draw_predictions(image[:, :, ::-1], predictions, metadata, args.confidence_threshold, scale)
        os.makedirs(os.path.dirname(out_path) or ".", exist_ok=True)
        Image.fromarray(drawn).save(out_path)
        written.append(out_path)
        logger.info(f"{path} -> {out_path}")
    return written, failed


def main(argv: list[str] | None = None) -> int:
    setup_logger(name="semseg_heads")
    setup_logger(name="fvcore")
    args = get_parser().parse_args(argv)
    try:
        written, failed = run(args)
    except (FileNotFoundError, ValueError, CheckpointLoadError) as e:  # bad input: one line
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} PNG(s) to {args.output}")
    if failed:
        print(f"could not read {len(failed)} image(s):", file=sys.stderr)
        for path, reason in failed:
            print(f"  {path}: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
