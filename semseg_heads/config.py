"""Config keys added by semseg_heads; ``add_semseg_heads_config(cfg)`` sets their defaults.

Detectron2's own keys keep their meaning: ``MODEL.PIXEL_MEAN/STD``,
``MODEL.SEM_SEG_HEAD.{NAME, NUM_CLASSES, IGNORE_VALUE, LOSS_WEIGHT, NORM}`` and
``MODEL.BACKBONE.NAME``. Paper widths and paper choices are the defaults.
"""

from __future__ import annotations

from detectron2.config import CfgNode as CN


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

    # FCN (Long et al. 2015).
    _C.MODEL.FCN = CN()
    _C.MODEL.FCN.OUTPUT_STRIDE = 32  # 32 | 16 | 8: FCN-32s / 16s / 8s
    _C.MODEL.FCN.PAD_INPUT = 100  # the paper pads conv1_1 by 100 so small inputs still work
    # (0: "same" padding everywhere and inputs padded to a multiple of 32 instead).
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

    # Chair Segments and user datasets.
    _C.DATASETS.CHAIR_SEGMENTS = CN()
    # Report the paper's Prec./IoU/Dice beside SemSegEvaluator / COCOEvaluator.
    _C.DATASETS.CHAIR_SEGMENTS.PAPER_METRICS = True

    # Tools (semseg_heads.engine / evaluation).
    # Instance models join the paper's table through the union of the masks of the
    # instances scoring at least this (ROI_HEADS.SCORE_THRESH_TEST keeps far weaker ones).
    _C.DATASETS.CHAIR_SEGMENTS.INSTANCE_SCORE_THRESH = 0.5
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
