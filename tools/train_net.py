#!/usr/bin/env python
"""Train and evaluate semseg_heads models (and Detectron2's own) on the CPU or GPUs.

Detectron2's standard command line (``default_argument_parser``)::

    tools/train_net.py --config-file configs/ChairSegments/unet.yaml MODEL.DEVICE cpu
    tools/train_net.py --config-file configs/ChairSegments/unet.yaml --eval-only \\
        MODEL.WEIGHTS output/model_final.pth MODEL.DEVICE cpu
    tools/train_net.py --eval-only MODEL.WEIGHTS output/main_job/model_final.pth  # its config.yaml
    tools/train_net.py --config-file ... --resume          # continue from last_checkpoint
    tools/train_net.py --config-file ... --num-gpus 8      # torch.distributed, one process/GPU
    tools/train_net.py --config-file ... --eval-only MODEL.WEIGHTS ... TEST.AUG.ENABLED True
    tools/train_net.py --config-file ... --eval-only MODEL.WEIGHTS ... TEST.INFERENCE_MODE slide

With ``--eval-only`` and weights in a run folder, that run's ``config.yaml`` gives the model
keys (architecture, widths, classes, input size, precision; ``config_for_weights``), or the
whole config when there is no ``--config-file``; a line says so.

Your own folders of images and masks (semseg_heads.data.cli; NUM_CLASSES follows them)::

    tools/train_net.py --config-file configs/ChairSegments/unet.yaml \
        --dataset my_train=data/train/images:data/train/masks \
        --dataset my_val=data/val/images:data/val/masks \
        DATASETS.TRAIN '("my_train",)' DATASETS.TEST '("my_val",)' MODEL.DEVICE cpu
"""

from __future__ import annotations

import logging
import sys
from argparse import Namespace

import torch
from detectron2.config import CfgNode
from detectron2.engine import default_argument_parser, default_setup, launch
from detectron2.evaluation import verify_results
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

import semseg_heads  # noqa: F401  (registers models and datasets)
from semseg_heads.checkpoint import CheckpointLoadError, SafeDetectionCheckpointer
from semseg_heads.config import config_for_weights, fixed_class_count_opts, get_semseg_heads_cfg
from semseg_heads.data import DatasetError
from semseg_heads.data.cli import (
    DatasetConfigError,
    add_dataset_arguments,
    check_datasets_registered,
    fit_num_classes,
    register_datasets_from_args,
)
from semseg_heads.engine import Trainer
from semseg_heads.evaluation.table import format_results_table


def setup(args: Namespace) -> CfgNode:
    """The config from ``--config-file`` and the trailing ``KEY VALUE`` overrides, after
    registering every ``--dataset`` (NUM_CLASSES follows the datasets)."""
    register_datasets_from_args(args)
    opts = list(args.opts)
    if args.eval_only:
        # MODEL.WEIGHTS in a run folder: that run's model keys (its config.yaml), said so.
        try:
            cfg, run = config_for_weights(args.config_file, opts)
        except ValueError as e:
            raise SystemExit(f"error: {e}") from None
        if run is not None:
            print(run.message(), flush=True)
            opts += fixed_class_count_opts(cfg)  # the run's class count stands, as if given
        datasets = list(cfg.DATASETS.TEST)  # evaluation needs no training data
    else:
        if not args.config_file:
            raise SystemExit("error: --config-file is required to train")
        cfg = get_semseg_heads_cfg(args.config_file, opts)
        check_datasets_registered(cfg.DATASETS.TRAIN, "DATASETS.TRAIN")
        datasets = [*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST]
    check_datasets_registered(cfg.DATASETS.TEST, "DATASETS.TEST")
    fit_num_classes(cfg, opts, datasets)
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(
            f"MODEL.DEVICE is '{cfg.MODEL.DEVICE}' but torch sees no CUDA device; "
            "add `MODEL.DEVICE cpu` to the command line to run on the CPU."
        )
    cfg.freeze()
    default_setup(cfg, args)
    # default_setup logs Detectron2 and fvcore; the project's own lines go to the same log.
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="semseg_heads")
    return cfg


def main(args: Namespace):
    """Train (or with ``--eval-only`` evaluate) as configured; returns the evaluation results."""
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        checkpointer = SafeDetectionCheckpointer.for_inference(model, cfg, save_dir=cfg.OUTPUT_DIR)
        checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        res = Trainer.test(cfg, model)
        if cfg.TEST.AUG.ENABLED:
            res.update(Trainer.test_with_TTA(cfg, model))
        if comm.is_main_process():
            verify_results(cfg, res)
            _log_table(cfg, res)
        return res

    # With TEST.AUG.ENABLED the Trainer ends with an evaluation with test-time augmentation,
    # as Detectron2's tools/train_net.py does.
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    res = trainer.train()  # the latest evaluations' results (None when none ran)
    if comm.is_main_process() and res:
        _log_table(cfg, res)
    return res


def _log_table(cfg: CfgNode, results) -> None:
    if len(cfg.DATASETS.TEST) == 1:
        # One dataset: Detectron2 returns {task: metrics}, test_with_TTA {task_TTA: metrics}.
        name = cfg.DATASETS.TEST[0]
        plain = {k: v for k, v in results.items() if not k.endswith("_TTA")}
        tta = {k[: -len("_TTA")]: v for k, v in results.items() if k.endswith("_TTA")}
        results = {name: plain, **({f"{name} (TTA)": tta} if tta else {})}
    table = format_results_table(results)
    if table:
        logging.getLogger("detectron2").info("Evaluation results:\n" + table)


def invoke_main() -> None:
    args = add_dataset_arguments(default_argument_parser()).parse_args()
    print("Command Line Args:", args)
    try:
        launch(
            main,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
        )
    except (CheckpointLoadError, DatasetError, DatasetConfigError) as e:
        # Bad input, not a bug: the message names the file or key; a traceback would bury it.
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    invoke_main()
