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
import re
from dataclasses import dataclass, field
from typing import Any

import detectron2.config as d2_config
import yaml
from detectron2 import model_zoo
from detectron2.config import CfgNode, get_cfg
from detectron2.config import CfgNode as CN

__all__ = [
    "MODEL_ZOO_PREFIX",
    "RUN_CONFIG_FILE",
    "RunConfig",
    "add_semseg_heads_config",
    "config_for_weights",
    "get_semseg_heads_cfg",
    "merge_config_file",
    "model_metadata",
    "run_config_path",
    "save_run_config",
]


def add_semseg_heads_config(cfg: CN) -> CN:
    """Add semseg_heads' keys to a Detectron2 config in place (safe to call twice)."""
    if "SEMSEG_HEADS" in cfg.MODEL:
        return cfg
    _C = cfg

    _C.MODEL.SEMSEG_HEADS = CN()
    # Multiplies every architecture's channel widths (paper widths at 1.0) so CPU runs stay
    # small; widths are rounded to a multiple of 1 with a floor of 1.
    _C.MODEL.SEMSEG_HEADS.WIDTH_SCALE = 1.0
    # "cross_entropy" (softmax CE, the default), "dice", "cross_entropy+dice", "lovasz"
    # (Lovász-softmax, Berman et al. 2018) or "cross_entropy+lovasz".
    _C.MODEL.SEMSEG_HEADS.LOSS_TYPE = "cross_entropy"
    # Optional per-class weights for the cross-entropy term; empty = unweighted.
    _C.MODEL.SEMSEG_HEADS.CLASS_WEIGHTS = []
    # The Dice or Lovász term per image, averaged over the batch's images, as the paper's IoU
    # is averaged; False pools the batch's pixels.
    _C.MODEL.SEMSEG_HEADS.DICE_PER_IMAGE = False
    # U-Net's weight map (Sec. 3, Eq. 2) on the cross-entropy term: pixels near a border between
    # two labels weigh 1 + BORDER_WEIGHT * exp(-d^2 / (2 BORDER_SIGMA^2)), d in pixels of the
    # target; 0 = off (the project's heads).
    _C.MODEL.SEMSEG_HEADS.BORDER_WEIGHT = 0.0
    _C.MODEL.SEMSEG_HEADS.BORDER_SIGMA = 2.0
    # The training dataset's class names and colours, recorded in the run folder's config.yaml
    # by the Trainer (``save_run_config``) so that demo, export and the browser page label a
    # model with its own classes even where that dataset is not registered. Empty: the test
    # dataset's metadata names them.
    _C.MODEL.SEMSEG_HEADS.CLASS_NAMES = []
    _C.MODEL.SEMSEG_HEADS.CLASS_COLORS = []

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
    # Start each residual branch at zero (the last norm's scale of every block set to 0), as
    # torchvision's ``zero_init_residual`` (Goyal et al. 2017, Sec. 5.1): every block begins as
    # the identity, which speeds a deep ResNet's start from random weights. Detectron2 leaves
    # it out; loaded weights replace it.
    _C.MODEL.RESNETS.ZERO_INIT_RESIDUAL = False

    # Mask R-CNN's MaskRCNNDiceHead: each detection's score times its mask's maskness at
    # inference (semseg_heads.modeling.mask_scoring), so masks are ranked by their quality too.
    _C.MODEL.ROI_MASK_HEAD.RESCORE_BY_MASKNESS = False

    # Optimizer built by the Trainer: "SGD" (Detectron2's build_optimizer) or "Adam"
    # (the reference U-Net recipe). SOLVER.BASE_LR / WEIGHT_DECAY apply to both.
    _C.SOLVER.OPTIMIZER = "SGD"
    # Adam / AdamW only: PyTorch's fused kernel (``fused=True``) in place of its per-tensor loop,
    # half the optimizer's time on the CPU; its updates differ from the loop's in the last bits.
    _C.SOLVER.FUSED = False
    # The iterations Detectron2's learning-rate schedule spans (its warm-up and WarmupCosineLR's
    # cosine): 0 is SOLVER.MAX_ITER, Detectron2's own. Larger, training stops partway through
    # its schedule (a cosine cut at MAX_ITER / LR_SCHEDULE_ITERS), for a run sized to a time
    # budget whose learning rate should not yet have decayed to zero.
    _C.SOLVER.LR_SCHEDULE_ITERS = 0

    # An exponential moving average of the weights (semseg_heads.model_ema; d2go's key names):
    # evaluated in place of the trained weights and saved in checkpoints as "model_ema".
    _C.MODEL_EMA = CN()
    _C.MODEL_EMA.ENABLED = False
    _C.MODEL_EMA.DECAY = 0.999

    # U-Net (Ronneberger et al. 2015).
    _C.MODEL.UNET = CN()
    _C.MODEL.UNET.BASE_WIDTH = 64
    _C.MODEL.UNET.DEPTH = 4
    _C.MODEL.UNET.BILINEAR = False  # True: bilinear upsampling (bottleneck halved)
    _C.MODEL.UNET.NORM = "BN"
    # Sec. 3.1's dropout at the end of the contracting path (on the bottleneck's output); the
    # paper gives no rate, 0 turns it off (the PyTorch variant's choice).
    _C.MODEL.UNET.DROPOUT = 0.0

    # DeconvNet (Noh et al. 2015).
    _C.MODEL.DECONVNET = CN()
    _C.MODEL.DECONVNET.NORM = "BN"

    # Dilated convolutions context network (Yu & Koltun 2016).
    _C.MODEL.DILATED = CN()
    _C.MODEL.DILATED.CONTEXT = "basic"  # "none" (front-end only) | "basic" | "large"
    _C.MODEL.DILATED.NORM = ""
    # True: train the context module alone on a trained front-end's output (Sec. 5's second
    # stage; MODEL.WEIGHTS names the front-end's checkpoint).
    _C.MODEL.DILATED.FREEZE_FRONTEND = False

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
    # How many periodic checkpoints (model_NNNNNNN.pth) a run keeps, newest first; older ones
    # are deleted as new ones are written (fvcore's PeriodicCheckpointer max_to_keep; those
    # written before a --resume are not counted). model_final.pth is always kept, and --resume
    # needs only the newest. 0 keeps all, as Detectron2.
    _C.SOLVER.CHECKPOINT_MAX_TO_KEEP = 0

    # Mixed precision and speed (semseg_heads.amp, semseg_heads.data.cache).
    # SOLVER.AMP.ENABLED (Detectron2's key) also switches inference autocast (one switch).
    # "" = per device: bfloat16 on the CPU, float16 (+ GradScaler) on CUDA; or "bfloat16" /
    # "float16".
    _C.SOLVER.AMP.PRECISION = ""
    # NHWC weights/activations for the 2-D conv models (faster oneDNN/cuDNN kernels).
    _C.MODEL.CHANNELS_LAST = True
    # Keep decoded train images + label maps in memory (small images: a batch costs flips
    # and a copy instead of PNG decoding). None (auto): when the estimate fits CACHE_MAX_MB
    # and a quarter of the available memory; True: always (refused past CACHE_MAX_MB); False: never.
    _C.DATALOADER.CACHE_IMAGES = None
    _C.DATALOADER.CACHE_MAX_MB = 4096
    # Batches the training loader prepares ahead in a background thread when it runs in the
    # training process (NUM_WORKERS resolved to 0), so reading and mapping overlap the step
    # (semseg_heads.data.prefetch); 0 (default): in turn with the step, as Detectron2. On the
    # 2-core reference CPU it paid only where PNGs are decoded in the step (no image cache):
    # docs/measurements.md, "A loader thread".
    _C.DATALOADER.PREFETCH_BATCHES = 0
    # Load the next batch in a background thread while the step's backward pass runs (PyTorch's
    # autograd engine releases the GIL there), when the loader runs in the training process;
    # the same batches in the same order (semseg_heads.data.prefetch).
    _C.DATALOADER.LOAD_DURING_BACKWARD = False
    return cfg


#: ``_BASE_`` prefix naming a config in Detectron2's model zoo.
MODEL_ZOO_PREFIX = "model_zoo:"

# fvcore joins a relative _BASE_ to the folder of the file naming it, so a model-zoo base
# arrives as ".../model_zoo:<path>", and a zoo config's own relative base as
# ".../model_zoo:<path>/../<base>".
_MODEL_ZOO_PATH = re.compile(r"(?:^|[/\\])" + re.escape(MODEL_ZOO_PREFIX) + r"(.+)$")


class _ModelZooCfgNode(d2_config.CfgNode):
    """Detectron2's ``CfgNode`` whose config files may name a base of Detectron2's model zoo as
    ``_BASE_: "model_zoo:<path>"``. Everything else is Detectron2's loading: ``_BASE_`` chains
    (relative paths, lists), unsafe-YAML fallback and config-version upgrades."""

    @classmethod
    def _open_cfg(cls, filename: str):
        # The one override point Detectron2's own CfgNode uses (for its PathManager): every
        # file of a _BASE_ chain is opened here.
        zoo = _MODEL_ZOO_PATH.search(str(filename))
        if zoo:
            filename = model_zoo.get_config_file(os.path.normpath(zoo.group(1)).replace(os.sep, "/"))
        return super()._open_cfg(filename)


def merge_config_file(cfg: CfgNode, config_file: str) -> None:
    """``cfg.merge_from_file(config_file)`` (Detectron2's: bases, version upgrade), also
    resolving ``_BASE_: "model_zoo:<path>"``, with errors that name the file."""
    if not os.path.isfile(config_file):
        raise FileNotFoundError(f"config file '{config_file}' does not exist")
    with open(config_file) as f:
        try:
            raw = yaml.safe_load(f)
        except yaml.constructor.ConstructorError:
            raw = {}  # Python tags: Detectron2's loader reads them (unsafe load, with a warning)
        except yaml.YAMLError as e:
            raise ValueError(f"config file '{config_file}' is not valid YAML: {e}") from e
    if raw is not None and not isinstance(raw, dict):
        raise ValueError(f"config file '{config_file}' holds a {type(raw).__name__}, not a mapping")
    if cfg.is_frozen():
        raise RuntimeError(f"cannot merge '{config_file}' into a frozen config; call cfg.defrost() first")
    # Detectron2 opens a config's files through the node's class: merge into a copy of ours,
    # then give the caller's node the result in its own class (as Detectron2's version upgrade
    # replaces a node's content).
    node = _ModelZooCfgNode(cfg)
    _copy_new_allowed(cfg, node)
    try:
        node.merge_from_file(config_file)
    except KeyError as e:
        raise KeyError(
            f"config file '{config_file}' (or a _BASE_ it names): {e.args[0] if e.args else e}; "
            "correct the key's spelling (a run folder's config.yaml lists every key), or add "
            "the keys' defaults (add_semseg_heads_config) to the config before merging"
        ) from None
    except yaml.YAMLError as e:
        raise ValueError(f"a _BASE_ of config file '{config_file}' is not valid YAML: {e}") from e
    merged = type(cfg)(node)
    _copy_new_allowed(node, merged)
    cfg.clear()
    cfg.update(merged)


def _copy_new_allowed(src: CfgNode, dst: CfgNode) -> None:
    """Each node's ``new_allowed`` flag (which converting a node between classes resets)."""
    dst.set_new_allowed(src.is_new_allowed())  # recursive: children are set after
    for key, value in src.items():
        if isinstance(value, CfgNode) and isinstance(dst.get(key), CfgNode):
            _copy_new_allowed(value, dst[key])


def get_semseg_heads_cfg(config_file: str = "", opts: list[str] | None = None) -> CfgNode:
    """Detectron2's default config + semseg_heads' keys + ``config_file`` + ``opts`` (unfrozen)."""
    cfg = get_cfg()
    add_semseg_heads_config(cfg)
    if config_file:
        merge_config_file(cfg, config_file)
    if opts:
        cfg.merge_from_list(list(opts))
    return cfg


# ---------------------------------------------------------------------------------------------
# Run folders: the config a model was trained with travels beside its checkpoints.

#: A run folder's full config, the file Detectron2's ``default_setup`` writes.
RUN_CONFIG_FILE = "config.yaml"
#: Keys that describe the model a checkpoint holds (architecture, widths, classes, input size
#: and format, precision): taken from the run's config.yaml by ``config_for_weights``.
MODEL_KEY_PREFIXES = ("MODEL.", "INPUT.", "SOLVER.AMP.")
#: Under those prefixes but about the invocation, not the model.
_INVOCATION_KEYS = frozenset({"MODEL.WEIGHTS", "MODEL.DEVICE"})


def _uses_thing_classes(cfg: CfgNode) -> bool:
    return cfg.MODEL.META_ARCHITECTURE == "GeneralizedRCNN"


def save_run_config(cfg: CfgNode) -> str:
    """Write ``cfg`` in full to ``OUTPUT_DIR/config.yaml`` (as ``default_setup`` does) with the
    training dataset's class names and colours in ``MODEL.SEMSEG_HEADS.CLASS_NAMES/COLORS``;
    returns the path. An identical file is left as it is."""
    from detectron2.data import MetadataCatalog
    from detectron2.utils.file_io import PathManager

    out = cfg.clone()
    out.defrost()
    heads = out.MODEL.SEMSEG_HEADS
    if not heads.CLASS_NAMES and len(out.DATASETS.TRAIN):
        meta = MetadataCatalog.get(out.DATASETS.TRAIN[0])
        key = "thing" if _uses_thing_classes(out) else "stuff"
        heads.CLASS_NAMES = [str(c) for c in meta.get(f"{key}_classes", [])]
        colors = meta.get(f"{key}_colors", [])
        if len(colors) == len(heads.CLASS_NAMES):
            heads.CLASS_COLORS = [[int(v) for v in c] for c in colors]
    text = out.dump()
    path = os.path.join(out.OUTPUT_DIR, RUN_CONFIG_FILE)
    if PathManager.exists(path):
        with PathManager.open(path) as f:
            if f.read() == text:
                return path
    PathManager.mkdirs(out.OUTPUT_DIR)
    with PathManager.open(path, "w") as f:
        f.write(text)
    return path


def run_config_path(weights: str) -> str | None:
    """The ``config.yaml`` of the run folder that holds checkpoint ``weights``, or None (no
    such file, or weights that are not a local file path)."""
    if not weights or "://" in weights:
        return None
    path = os.path.join(os.path.dirname(os.path.expanduser(weights)), RUN_CONFIG_FILE)
    return path if os.path.isfile(path) else None


@dataclass
class RunConfig:
    """What ``config_for_weights`` took from a run folder's config.yaml."""

    path: str
    #: model keys whose value differed from the --config-file's: key -> (was, now)
    changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    whole: bool = False  # no --config-file: the run's config is the config

    def message(self) -> str:
        """The line the tools print."""
        if self.whole:
            return f"Config: the run's own {self.path} (no --config-file given)."
        if not self.changed:
            return f"Model keys from the run's {self.path} (they equal the --config-file's)."
        shown = ", ".join(f"{k} {v[1]}" for k, v in list(self.changed.items())[:6])
        more = f" and {len(self.changed) - 6} more" if len(self.changed) > 6 else ""
        return (
            f"Model keys from the run's {self.path}: {shown}{more} (differ from the --config-file; "
            "KEY VALUE on the command line overrides)."
        )


def _flatten(node: CfgNode, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for k, v in node.items():
        if isinstance(v, CfgNode):
            flat.update(_flatten(v, f"{prefix}{k}."))
        else:
            flat[prefix + k] = v
    return flat


def _plain(value: Any) -> Any:
    """Tuples as lists, so a value read back from YAML equals the config file's."""
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def _set(cfg: CfgNode, key: str, value: Any) -> None:
    node, parts = cfg, key.split(".")
    for p in parts[:-1]:
        node = node[p]
    node[parts[-1]] = value


def config_for_weights(
    config_file: str = "", opts: list[str] | None = None, weights: str = ""
) -> tuple[CfgNode, RunConfig | None]:
    """The config for using a trained model: ``--config-file`` + ``opts`` as usual, but when the
    weights (``weights``, else ``MODEL.WEIGHTS``) lie in a run folder with a ``config.yaml``,
    its model keys (``MODEL.*`` but the weights and device, ``INPUT.*``, ``SOLVER.AMP.*``;
    class names included) replace the config file's, unless given in ``opts``. Without
    ``config_file`` the run's config.yaml is the config. Returns (unfrozen cfg, what was
    taken or None)."""
    opts = list(opts or [])
    given = set(opts[::2])
    cfg = get_semseg_heads_cfg(config_file, opts)
    path = run_config_path(weights or cfg.MODEL.WEIGHTS)
    if path is None:
        if not config_file:
            raise ValueError(
                f"no --config-file given and no {RUN_CONFIG_FILE} beside the weights "
                f"'{weights or cfg.MODEL.WEIGHTS}': pass --config-file with the config the model "
                "was trained with"
            )
        return cfg, None
    try:
        run = get_semseg_heads_cfg(path)
    except (KeyError, ValueError, AssertionError) as e:
        raise ValueError(
            f"cannot read the run config '{path}' ({e}); pass --config-file with the config "
            "the model was trained with"
        ) from e
    if not config_file:
        run.merge_from_list(opts)
        if weights and "MODEL.WEIGHTS" not in given:
            run.MODEL.WEIGHTS = weights
        return run, RunConfig(path, whole=True)
    base = get_semseg_heads_cfg(config_file)
    flat = _flatten(base)
    changed = {}
    for key, value in _flatten(run).items():
        if not key.startswith(MODEL_KEY_PREFIXES) or key in _INVOCATION_KEYS or key in given:
            continue
        if _plain(flat.get(key)) != _plain(value):
            changed[key] = (flat.get(key), value)
            _set(base, key, value)
    base.merge_from_list(opts)
    if weights and "MODEL.WEIGHTS" not in given:
        base.MODEL.WEIGHTS = weights
    return base, RunConfig(path, changed)


def model_metadata(cfg: CfgNode, dataset_name: str | None = None) -> Any:
    """Detectron2 ``Metadata`` naming the model's classes: ``dataset_name``'s (default: the
    first test dataset) when it has as many classes as the model and agrees with the run's
    recorded ``MODEL.SEMSEG_HEADS.CLASS_NAMES``; otherwise those recorded names and colours."""
    from detectron2.data import MetadataCatalog
    from detectron2.data.catalog import Metadata

    if dataset_name is None and len(cfg.DATASETS.TEST):
        dataset_name = cfg.DATASETS.TEST[0]
    key = "thing" if _uses_thing_classes(cfg) else "stuff"
    recorded = list(cfg.MODEL.SEMSEG_HEADS.CLASS_NAMES)
    meta = MetadataCatalog.get(dataset_name) if dataset_name else None
    if meta is not None and (not recorded or list(meta.get(f"{key}_classes", [])) == recorded):
        return meta
    if not recorded:
        return meta if meta is not None else MetadataCatalog.get("__unused")
    kwargs: dict[str, Any] = {f"{key}_classes": recorded}
    if len(cfg.MODEL.SEMSEG_HEADS.CLASS_COLORS) == len(recorded):
        kwargs[f"{key}_colors"] = [tuple(int(v) for v in c) for c in cfg.MODEL.SEMSEG_HEADS.CLASS_COLORS]
    return Metadata(name="run classes", **kwargs)


def fixed_class_count_opts(cfg: CfgNode) -> list[str]:
    """``KEY VALUE`` opts repeating ``cfg``'s class counts: passed to ``fit_num_classes`` they
    keep a trained model's class count from being changed to follow a dataset."""
    return [
        "MODEL.SEM_SEG_HEAD.NUM_CLASSES", str(cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES),
        "MODEL.ROI_HEADS.NUM_CLASSES", str(cfg.MODEL.ROI_HEADS.NUM_CLASSES),
    ]  # fmt: skip
