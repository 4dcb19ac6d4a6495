#!/usr/bin/env python
"""Overhead figures for one config, measured in one process and one run: the trainer against a
plain PyTorch loop, the model against the bare network at inference, the data loader alone,
and this machine's convolution ceiling (``chairseg.measure.benchmark`` says how).

    python tools/benchmark.py --config-file configs/ChairSegments/unet.yaml
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

import torch

from chairseg.measure.benchmark import BenchmarkSettings, format_report, run_benchmark
from semseg_heads.utils.io import refuse_existing, write_json_atomic

REPO = Path(__file__).resolve().parents[1]


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--config-file", default=str(REPO / "configs/ChairSegments/unet.yaml"))
    p.add_argument(
        "--variants",
        nargs="+",
        default=["fp32", "bf16", "bf16+cl"],
        help="precision variants, each <fp32|bf16|fp16>[+cl] (+cl: MODEL.CHANNELS_LAST True); "
        "the first is the baseline of the speed-ups",
    )
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--iters", type=int, default=20, help="timed training iterations per variant")
    p.add_argument("--infer-iters", type=int, default=20, help="timed inference batches per variant")
    p.add_argument("--loader-batches", type=int, default=50, help="timed batches of the loader alone")
    p.add_argument("--warmup", type=int, default=3, help="untimed iterations before each measurement")
    p.add_argument("--block", type=int, default=5, help="iterations per block when interleaving variants")
    p.add_argument(
        "--threads", type=int, default=torch.get_num_threads(), help="torch threads for all variants"
    )
    p.add_argument("--num-workers", type=int, default=None, help="override DATALOADER.NUM_WORKERS")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument(
        "--data-root",
        default=None,
        help="folder holding Chair064/ (default: $DETECTRON2_DATASETS/ChairSegments if it has Chair064, "
        "else a generated one under --generate-into)",
    )
    p.add_argument("--generate-into", default=str(REPO / "output/benchmark_data/ChairSegments"))
    p.add_argument(
        "--profile", action="store_true", help="cProfile the training run and print the top functions"
    )
    p.add_argument("--profile-lines", type=int, default=40)
    p.add_argument(
        "--onnx", action="store_true", help="add ONNX Runtime (fp32 graph) to the inference table (CPU)"
    )
    p.add_argument(
        "--trainer-batches",
        type=int,
        default=0,
        help="> 0: the trainer steps over this many batches taken from its loader beforehand, in turn "
        "(the trainer without the loader's work, to split its overhead)",
    )
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    p.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="config overrides: KEY VALUE ...")
    return p


def main(argv: Sequence[str] | None = None) -> dict:
    parser = get_parser()
    args = vars(parser.parse_args(argv))
    json_path, overwrite = args.pop("json"), args.pop("overwrite")
    if json_path:  # refused before minutes of measuring
        try:
            refuse_existing(json_path, overwrite)
        except FileExistsError as e:
            parser.error(f"--json {e}")
    settings = BenchmarkSettings(**{f.name: args[f.name] for f in fields(BenchmarkSettings)})
    result = run_benchmark(settings)
    print(format_report(result))
    if "profile" in result:
        print("\ncProfile of the training run (cumulative):\n" + result["profile"])
    if json_path:
        write_json_atomic({k: v for k, v in result.items() if k != "profile"}, json_path, indent=2)
    return result


if __name__ == "__main__":
    main()
