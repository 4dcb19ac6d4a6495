#!/usr/bin/env python
"""Start the browser demo (semseg_heads.deploy.serve) on http://127.0.0.1:8000/::

    tools/serve.py --config-file configs/ChairSegments/unet.yaml MODEL.WEIGHTS output/model_final.pth

Several models: repeat ``--config-file`` (each with its own ``--weights``, in the same order;
trailing KEY VALUE opts apply to all) and/or add exported graphs with ``--onnx model.onnx``
(ONNX Runtime, settings from ``model.onnx.json``). The page offers a choice when there are
several, and a choice of inference: as configured, resized, whole image or sliding window
(TEST.SLIDING_WINDOW.* set the tiles; uploads over --max-side are scaled down first). It
listens on 127.0.0.1 only unless ``--host`` says otherwise.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from detectron2.data import MetadataCatalog
from detectron2.utils.logger import setup_logger

import semseg_heads  # noqa: F401  (registers models and datasets)
from semseg_heads.config import get_semseg_heads_cfg
from semseg_heads.deploy.serve import Limits, ServedModel, create_app, generated_samples
from semseg_heads.engine import Predictor

logger = logging.getLogger("semseg_heads.serve")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config-file", action="append", default=[], metavar="FILE", help="a model's config (repeatable)"
    )
    parser.add_argument(
        "--weights", action="append", default=[], metavar="FILE",
        help="MODEL.WEIGHTS of the config files, in their order (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--onnx", action="append", default=[], metavar="FILE", help="an exported .onnx (repeatable)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--samples", type=int, default=3, help="generated chair images offered as samples")
    parser.add_argument(
        "--max-side", type=int, default=Limits.max_side, help="longer sides are scaled down to this"
    )
    parser.add_argument(
        "--max-megapixels", type=float, default=Limits.max_pixels / 1e6, help="larger images are refused"
    )
    parser.add_argument(
        "--max-mb", type=int, default=Limits.max_bytes // 2**20, help="larger files are refused"
    )
    parser.add_argument(
        "opts", default=[], nargs=argparse.REMAINDER, help="config overrides for every config"
    )
    return parser


def build_models(args: argparse.Namespace) -> list[ServedModel]:
    if not args.config_file and not args.onnx:
        raise SystemExit("error: give at least one --config-file or --onnx")
    if args.weights and len(args.weights) != len(args.config_file):
        raise SystemExit(
            f"error: {len(args.weights)} --weights for {len(args.config_file)} --config-file; "
            "give one per config"
        )
    models = []
    for i, config_file in enumerate(args.config_file):
        opts = list(args.opts) + (["MODEL.WEIGHTS", args.weights[i]] if args.weights else [])
        cfg = get_semseg_heads_cfg(config_file, opts)
        cfg.MODEL.DEVICE = "cpu"
        cfg.freeze()
        predictor = Predictor(cfg)
        meta = (
            MetadataCatalog.get(cfg.DATASETS.TEST[0])
            if len(cfg.DATASETS.TEST)
            else MetadataCatalog.get("__unused")
        )
        name = os.path.splitext(os.path.basename(config_file))[0]
        # The page's inference choices; with TEST.AUG the augmented images run as configured.
        inference = None if predictor.tta is not None else predictor.inference
        models.append(ServedModel(_unique(name, models), predictor, meta, inference))
    if args.onnx:
        from semseg_heads.deploy import ONNXPredictor

        for path in args.onnx:
            predictor = ONNXPredictor(path)
            name = os.path.splitext(os.path.basename(path))[0] + " (ONNX Runtime)"
            models.append(
                ServedModel(_unique(name, models), predictor, predictor.metadata, predictor.inference)
            )
    return models


def _unique(name: str, models: list[ServedModel]) -> str:
    taken = {m.name for m in models}
    n, candidate = 2, name
    while candidate in taken:
        candidate, n = f"{name} #{n}", n + 1
    return candidate


def main(argv: list[str] | None = None) -> int:
    setup_logger(name="semseg_heads")
    args = get_parser().parse_args(argv)
    import uvicorn

    limits = Limits(
        max_bytes=args.max_mb * 2**20, max_pixels=int(args.max_megapixels * 1e6), max_side=args.max_side
    )
    app = create_app(build_models(args), generated_samples(args.samples) if args.samples else {}, limits)
    print(f"semseg_heads demo on http://{args.host}:{args.port}/ (Ctrl+C stops it)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
