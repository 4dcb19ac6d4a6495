"""semseg_heads' config: its keys (``add_semseg_heads_config(cfg)`` sets their defaults) and
config-file loading for every tool (``get_semseg_heads_cfg``).

A config file's ``_BASE_`` may name a config of Detectron2's model zoo as
``"model_zoo:<path>"`` (e.g. ``model_zoo:COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml``),
resolved with ``detectron2.model_zoo.get_config_file``.

Detectron2's own keys keep their meaning: ``MODEL.PIXEL_MEAN/STD``,
``MODEL.SEM_SEG_HEAD.{NAME, NUM_CLASSES, IGNORE_VALUE, LOSS_WEIGHT, NORM}`` and
``MODEL.BACKBONE.NAME``. Paper widths and paper choices are the defaults.
"""

from __future__ import annotations

import os

import yaml
from detectron2 import model_zoo
from detectron2.config import CfgNode, get_cfg
from detectron2.config import CfgNode as CN

__all__ = ["add_semseg_heads_config", "get_semseg_heads_cfg", "merge_config_file", "MODEL_ZOO_PREFIX"]


def add_semseg_heads_config(cfg: CN) -> CN:
    """Add semseg_heads' keys to a Detectron2 config in place (safe to call twice)."""
    if "SEMSEG_HEADS" in cfg.MODEL:
        return cfg
    _C = cfg

    _C.MODEL.SEMSEG_HEADS = CN()
    # Multiplies every architecture's channel widths (paper widths at 1.0) so CPU runs stay
    # small; widths are rounded to a multiple of 1 with a floor of 1.
    _C.MODEL.SEMSEG_HEADS.WIDTH_SCALE = 1.0
    # "cross_entropy" (softmax CE, the default), "dice", or "cross_entropy+dice".
    _C.MODEL.SEMSEG_HEADS.LOSS_TYPE = "cross_entropy"
    # Optional per-class weights for the cross-entropy term; empty = unweighted.
    _C.MODEL.SEMSEG_HEADS.CLASS_WEIGHTS = []

    # VGG16 backbone (FCN, DeconvNet, dilated front-end): which paper's variant.
    _C.MODEL.VGG = CN()
    _C.MODEL.VGG.VARIANT = "fcn"  # "fcn" | "deconvnet" | "dilated"
    _C.MODEL.VGG.NORM = ""  # "" for FCN / dilated (no BN in the papers), "BN" for DeconvNet
    _C.MODEL.VGG.FC_DROPOUT = 0.5
    _C.MODEL.VGG.OUT_FEATURES = ["fc7"]
    # Variant "fcn" only (FCN Sec. 4.1): the paper pads conv1_1 by 100 so small inputs still
    # work (0: "same" padding everywhere and inputs padded to a multiple of 32 instead).
    # DeconvNet and the dilated front-end always pad "same".
    _C.MODEL.VGG.PAD_INPUT = 100

    # FCN (Long et al. 2015).
    _C.MODEL.FCN = CN()
    _C.MODEL.FCN.OUTPUT_STRIDE = 32  # 32 | 16 | 8: FCN-32s / 16s / 8s
    # Optional 3x3 conv block before each score layer (0 = none, as in the VGG16 paper model;
    # 512 = torchvision's FCN-ResNet head). Its norm and the dropout after it:
    _C.MODEL.FCN.CONV_DIMS = 0
    _C.MODEL.FCN.NORM = "BN"
    _C.MODEL.FCN.DROPOUT = 0.1

    # Dilated ResNet for FCN-ResNet (torchvision's replace_stride_with_dilation; the key
    # follows Detectron2's DeepLab project): res4/res5 dilation (1, 1) -> output stride 32,
    # (1, 2) -> 16, (2, 4) -> 8.
    _C.MODEL.RESNETS.RES4_DILATION = 1

    # Optimizer built by the Trainer: "SGD" (Detectron2's build_optimizer) or "Adam"
    # (the reference U-Net recipe). SOLVER.BASE_LR / WEIGHT_DECAY apply to both.
    _C.SOLVER.OPTIMIZER = "SGD"

    # U-Net (Ronneberger et al. 2015).
    _C.MODEL.UNET = CN()
    _C.MODEL.UNET.BASE_WIDTH = 64
    _C.MODEL.UNET.DEPTH = 4
    _C.MODEL.UNET.BILINEAR = False  # True: bilinear upsampling (bottleneck halved)
    _C.MODEL.UNET.NORM = "BN"

    # DeconvNet (Noh et al. 2015).
    _C.MODEL.DECONVNET = CN()
    _C.MODEL.DECONVNET.NORM = "BN"

    # Dilated convolutions context network (Yu & Koltun 2016).
    _C.MODEL.DILATED = CN()
    _C.MODEL.DILATED.CONTEXT = "basic"  # "none" (front-end only) | "basic" | "large"
    _C.MODEL.DILATED.NORM = ""

    # Loading MODEL.WEIGHTS that match fewer than half of the model's parameter tensors (name
    # and shape) is an error (weights of another config) unless this is True or the file says
    # "backbone_only": True (semseg_heads.checkpoint).
    _C.MODEL.WEIGHTS_ALLOW_PARTIAL = False

    # Evaluation (semseg_heads.engine.build_evaluator). Which datasets get the paper's per-image
    # IoU/Dice is the dataset's metadata ``paper_metrics`` (default: binary datasets).
    # Instance models join the semantic table through the union of the masks of the
    # instances scoring at least this (ROI_HEADS.SCORE_THRESH_TEST keeps far weaker ones).
    _C.TEST.INSTANCE_SCORE_THRESH = 0.5
    # Inference at any image size (semseg_heads.modeling.sliding_window), semantic models:
    # "resize": Detectron2's path, the image resized to INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST;
    # "whole": the image as loaded (times SLIDING_WINDOW.SCALE) in one forward pass;
    # "slide": overlapping TILE_SIZE tiles STRIDE apart, their logits blended ("average" or
    # "gaussian"), BATCH_SIZE tiles per forward pass. Memory follows the tile, not the image.
    _C.TEST.INFERENCE_MODE = "resize"
    _C.TEST.SLIDING_WINDOW = CN()
    _C.TEST.SLIDING_WINDOW.TILE_SIZE = 512
    _C.TEST.SLIDING_WINDOW.STRIDE = 341
    _C.TEST.SLIDING_WINDOW.SCALE = 1.0
    _C.TEST.SLIDING_WINDOW.BLEND = "average"
    _C.TEST.SLIDING_WINDOW.BATCH_SIZE = 1
    # Test-time augmentation (semseg_heads.modeling.test_time_augmentation) uses Detectron2's
    # TEST.AUG keys: ENABLED, MIN_SIZES (shorter side of each scale; 0 = as loaded), MAX_SIZE,
    # FLIP (horizontal). Softmax probabilities are averaged over the augmented images.
    # Iterations between writes of metrics.json / console / TensorBoard (Detectron2 uses 20).
    _C.SOLVER.LOG_PERIOD = 20

    # Mixed precision and speed (semseg_heads.amp, semseg_heads.data.cache).
    # SOLVER.AMP.ENABLED (Detectron2's key) also switches inference autocast (one switch).
    # "" = per device: bfloat16 on the CPU, float16 (+ GradScaler) on CUDA; or "bfloat16" /
    # "float16".
    _C.SOLVER.AMP.PRECISION = ""
    # NHWC weights/activations for the 2-D conv models (faster oneDNN/cuDNN kernels).
    _C.MODEL.CHANNELS_LAST = True
    # Keep decoded train images + label maps in memory (small images: a batch costs flips
    # and a copy instead of PNG decoding); refused past CACHE_MAX_MB of estimated memory.
    _C.DATALOADER.CACHE_IMAGES = False
    _C.DATALOADER.CACHE_MAX_MB = 4096
    return cfg


#: ``_BASE_`` prefix naming a config in Detectron2's model zoo.
MODEL_ZOO_PREFIX = "model_zoo:"


def merge_config_file(cfg: CfgNode, config_file: str) -> None:
    """``cfg.merge_from_file(config_file)``, also resolving ``_BASE_: "model_zoo:<path>"``.

    Bases are merged first, in order, then the file's own keys, as Detectron2 does; a base
    that is a path is relative to the file that names it.
    """
    if not os.path.isfile(config_file):
        raise FileNotFoundError(f"config file '{config_file}' does not exist")
    with open(config_file) as f:
        try:
            raw = yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"config file '{config_file}' is not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ValueError(f"config file '{config_file}' holds a {type(raw).__name__}, not a mapping")
    if "_BASE_" not in raw:
        cfg.merge_from_file(config_file)  # Detectron2's loader (version upgrades included)
        return
    # Bases resolved here, not by Detectron2's loader, so that a model-zoo base anywhere in
    # the chain is found.
    for base in _as_list(raw.pop("_BASE_")):
        if base.startswith(MODEL_ZOO_PREFIX):
            cfg.merge_from_file(model_zoo.get_config_file(base[len(MODEL_ZOO_PREFIX) :]))
        else:
            merge_config_file(cfg, os.path.join(os.path.dirname(config_file), os.path.expanduser(base)))
    cfg.merge_from_other_cfg(CfgNode(raw))


def _as_list(x: str | list[str]) -> list[str]:
    return [x] if isinstance(x, str) else list(x)


def get_semseg_heads_cfg(config_file: str = "", opts: list[str] | None = None) -> CfgNode:
    """Detectron2's default config + semseg_heads' keys + ``config_file`` + ``opts`` (unfrozen)."""
    cfg = get_cfg()
    add_semseg_heads_config(cfg)
    if config_file:
        merge_config_file(cfg, config_file)
    if opts:
        cfg.merge_from_list(list(opts))
    return cfg
