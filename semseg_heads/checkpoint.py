"""Safe checkpoint loading for Detectron2's checkpointer.

Detectron2 v0.6 unpickles ``.pkl`` files with plain ``pickle`` and ``.pth`` files with a
``torch.load`` whose defaults depend on the torch release; unpickling runs whatever code the
file names. ``SafeDetectionCheckpointer`` only accepts tensors, numpy arrays and plain
containers: ``.pth``/``.pyth`` go through ``torch.load(weights_only=True)`` and ``.pkl``
through an unpickler that allows numpy's array constructors and nothing else. A truncated,
corrupt file (any truncation point, an empty file) gives a ``CheckpointLoadError`` naming the
file and calling it incomplete or corrupt; only a file naming other Python objects is called
unsafe. Weights for another model (too few tensors matching by name and shape) are refused.

It is a plain subclass: ``_load_file`` (fvcore's override point for file formats) reads the
file itself and returns the dict Detectron2's ``DetectionCheckpointer._load_file`` would; no
module of Detectron2, fvcore or torch is touched.
"""

from __future__ import annotations

import logging
import os
import pickle
from typing import Any

import torch
import yaml
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.utils.file_io import PathManager

from semseg_heads.model_ema import CHECKPOINT_KEY as EMA_CHECKPOINT_KEY

__all__ = [
    "MIN_MATCHED_SHARE",
    "CheckpointLoadError",
    "PartialWeightsError",
    "SafeDetectionCheckpointer",
    "load_checkpoint_file",
]

logger = logging.getLogger(__name__)


class CheckpointLoadError(RuntimeError):
    """A checkpoint file cannot be loaded (corrupt, truncated, or holds arbitrary objects)."""


#: The globals a Detectron2/Caffe2 ``.pkl`` weight file legitimately needs: numpy arrays.
_PKL_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
}


class _ArraysOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _PKL_ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(
                f"refusing to unpickle the global '{module}.{name}': weight files may only hold "
                "numpy arrays and plain containers"
            )
        return super().find_class(module, name)


def _hint(path: str) -> str:
    return (
        f"If '{os.path.basename(path)}' is the last checkpoint of an interrupted run, delete it "
        "(and correct or delete the 'last_checkpoint' file beside it) to resume from the one "
        "before; otherwise point MODEL.WEIGHTS at a good file."
    )


def _incomplete(path: str, why: str) -> CheckpointLoadError:
    return CheckpointLoadError(f"checkpoint '{path}' is incomplete or corrupt ({why}). {_hint(path)}")


def _is_refusal(e: BaseException) -> bool:
    # Only a named global is "unsafe"; every other unpickling failure is damage.
    msg = str(e)
    return "refusing to unpickle the global" in msg or "Unsupported global" in msg


def _safe_torch_load(f: Any) -> Any:
    return torch.load(f, map_location="cpu", weights_only=True)


def _safe_pickle_load(f: Any) -> Any:
    # latin1, as Detectron2 reads its model zoo's Python-2 pickles.
    return _ArraysOnlyUnpickler(f, encoding="latin1").load()


def load_checkpoint_file(path: str) -> Any:
    """Load ``path`` safely: tensors, numpy arrays and plain containers only.

    Raises:
        CheckpointLoadError: the file is empty, truncated or not a checkpoint ("incomplete or
            corrupt"), or names Python objects other than tensors/arrays ("unsafe").
    """
    path = PathManager.get_local_path(path)
    if os.path.getsize(path) == 0:
        raise _incomplete(path, "the file is empty")
    try:
        if path.endswith(".pkl"):
            with open(path, "rb") as f:
                return _safe_pickle_load(f)
        return _safe_torch_load(path)
    except Exception as e:  # noqa: BLE001  (damage shows as any of a dozen exception types)
        raise _load_error(path, e) from None


def _load_error(path: str, e: BaseException) -> CheckpointLoadError:
    if _is_refusal(e):
        return CheckpointLoadError(
            f"checkpoint '{path}' holds Python objects other than tensors and plain "
            f"containers, which could run arbitrary code; it was not loaded. ({str(e)[-300:]})"
        )
    return _incomplete(path, f"{type(e).__name__}: {str(e)[:200]}")


#: Below this share of the model's parameter tensors matched (name and shape), weights are
#: taken for the wrong model: an error unless partial loading is asked for.
MIN_MATCHED_SHARE = 0.5


class PartialWeightsError(CheckpointLoadError):
    """Weights that match too little of the model: probably made by another config."""


def _made_by(path: str, names: list[str]) -> str:
    """A guess at the config that made ``path``: the run's config.yaml beside it, or the
    names its parameters have."""
    folder = os.path.dirname(os.path.abspath(path))
    for candidate in (
        os.path.join(folder, "config.yaml"),
        os.path.join(os.path.dirname(folder), "config.yaml"),
    ):
        try:
            with open(candidate) as f:
                cfg = yaml.safe_load(f) or {}
        except (OSError, yaml.YAMLError):
            continue
        model = cfg.get("MODEL", {}) if isinstance(cfg, dict) else {}
        keys = {
            "MODEL.META_ARCHITECTURE": model.get("META_ARCHITECTURE"),
            "MODEL.BACKBONE.NAME": (model.get("BACKBONE") or {}).get("NAME"),
            "MODEL.SEMSEG_HEADS.WIDTH_SCALE": (model.get("SEMSEG_HEADS") or {}).get("WIDTH_SCALE"),
            "MODEL.SEM_SEG_HEAD.NUM_CLASSES": (model.get("SEM_SEG_HEAD") or {}).get("NUM_CLASSES"),
        }
        said = ", ".join(f"{k} {v}" for k, v in keys.items() if v is not None)
        return f"the config of the run that wrote them, '{candidate}' ({said})"
    prefixes = sorted({".".join(n.split(".")[:2]) for n in names})
    return (
        "another model (no config.yaml beside the file; its parameters are named "
        f"{', '.join(prefixes[:6])}{', ...' if len(prefixes) > 6 else ''})"
    )


def _conversion_hint(given: list[str], names: list[str]) -> str:
    """What to run when the weights are a U-Net's and the model has ``UNetPyramid``'s names."""
    if any(k.startswith("sem_seg_head.ups.") for k in given) and any(
        k.startswith("backbone.ups.") for k in names
    ):
        return (
            " A U-Net's weights start build_unet_pyramid_backbone after "
            "`python tools/convert_unet_to_pyramid.py <unet .pth> <start .pth>`."
        )
    return ""


class SafeDetectionCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` reading files safely and refusing weights for another model.

    ``_load_file`` reads the file with ``weights_only``/arrays-only unpickling and returns
    what Detectron2's would for the formats it reads (native ``.pth``, model-zoo and Caffe2
    ``.pkl``, pycls ``.pyth``; URLs are fetched by fvcore's ``load`` first). Loading weights
    of which fewer than :data:`MIN_MATCHED_SHARE` of the model's parameter tensors match by
    name and shape is a :class:`PartialWeightsError`, unless ``allow_partial``
    (``MODEL.WEIGHTS_ALLOW_PARTIAL``) or the file says ``"backbone_only": True`` (an ImageNet
    start); then the counts are logged.

    ``ema_weights`` (``MODEL_EMA.ENABLED``, for inference): a checkpoint that holds a moving
    average of its weights (``"model_ema"``, ``semseg_heads.model_ema``) loads those in place
    of the trained ones; one without loads as usual.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        save_dir: str = "",
        *,
        allow_partial: bool = False,
        ema_weights: bool = False,
        **kw: Any,
    ):
        super().__init__(model, save_dir, **kw)
        self.allow_partial = allow_partial
        self.ema_weights = ema_weights
        self._loading = ""

    @classmethod
    def for_inference(cls, model: torch.nn.Module, cfg: Any, save_dir: str = "") -> SafeDetectionCheckpointer:
        """The checkpointer that loads ``cfg``'s weights for inference (eval-only, ``Predictor``,
        export): ``MODEL.WEIGHTS_ALLOW_PARTIAL``, and the moving average with ``MODEL_EMA.ENABLED``."""
        return cls(
            model,
            save_dir,
            allow_partial=cfg.MODEL.WEIGHTS_ALLOW_PARTIAL,
            ema_weights=cfg.MODEL_EMA.ENABLED,
        )

    def load(self, path: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if path and "://" not in path and not os.path.isfile(path):
            raise FileNotFoundError(
                f"checkpoint '{path}' does not exist (MODEL.WEIGHTS or the output folder's 'last_checkpoint')"
            )
        self._loading = path
        return super().load(path, *args, **kwargs)

    def _load_file(self, filename: str) -> dict[str, Any]:
        # fvcore's Checkpointer.load hands a local file here (URLs already fetched).
        data = self._detectron2_format(filename, load_checkpoint_file(filename))
        if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
            raise CheckpointLoadError(
                f"checkpoint '{filename}' holds no state dict (expected a state dict, or "
                "Detectron2's {'model': state_dict, ...})"
            )
        ema = data.get(EMA_CHECKPOINT_KEY)
        if self.ema_weights and isinstance(ema, dict) and isinstance(ema.get("state"), dict):
            logger.info(f"Loading the moving average of the weights ('{EMA_CHECKPOINT_KEY}') of {filename}")
            data["model"] = ema["state"]
        if "backbone_only" in data["model"]:  # the flag at the top of a bare state dict
            data["backbone_only"] = bool(data["model"].pop("backbone_only"))
        return data

    def _detectron2_format(self, filename: str, data: Any) -> Any:
        """What ``DetectionCheckpointer._load_file`` (v0.6 and main) returns for the file's
        content: model-zoo / Caffe2 ``.pkl``, pycls ``.pyth`` and native checkpoints, with
        ``matching_heuristics`` where Detectron2 sets it."""
        if not isinstance(data, dict):
            return data  # refused by the caller with a message naming the file
        if filename.endswith(".pkl"):
            if "model" in data and "__author__" in data:  # Detectron2 model-zoo format
                self.logger.info(f"Reading a file from '{data['__author__']}'")
                return data
            if "blobs" in data:  # Caffe2 / Detectron1: detection models have "blobs"
                data = data["blobs"]
            if not isinstance(data, dict):
                return data
            data = {k: v for k, v in data.items() if not str(k).endswith("_momentum")}
            return {"model": data, "__author__": "Caffe2", "matching_heuristics": True}
        if filename.endswith(".pyth"):  # pycls
            if not isinstance(data.get("model_state"), dict):
                raise CheckpointLoadError(
                    f"checkpoint '{filename}': cannot load a .pyth file without 'model_state' "
                    "(pycls checkpoints hold their weights there)"
                )
            state = {k: v for k, v in data["model_state"].items() if not k.endswith("num_batches_tracked")}
            return {"model": state, "__author__": "pycls", "matching_heuristics": True}
        return data if "model" in data else {"model": data}

    def _load_model(self, checkpoint: Any):
        given = list(checkpoint.get("model", {}))  # the parent pops "model"
        incompatible = super()._load_model(checkpoint)
        names = [
            k
            for k in self.model.state_dict()
            if not k.endswith("num_batches_tracked") and k not in ("pixel_mean", "pixel_std")
        ]
        if not names:
            return incompatible
        missing = set(incompatible.missing_keys)
        matched = sum(k not in missing for k in names)
        share = matched / len(names)
        partial = bool(checkpoint.get("backbone_only", False)) or self.allow_partial
        if share < MIN_MATCHED_SHARE and not partial:
            path = self._loading or "the weights"
            raise PartialWeightsError(
                f"weights '{path}' match only {matched} of the model's {len(names)} parameter "
                f"tensors by name and shape (at least {MIN_MATCHED_SHARE:.0%} needed): they were "
                f"probably made by {_made_by(path, given)}. Point MODEL.WEIGHTS "
                "at weights trained with this config, or set MODEL.WEIGHTS_ALLOW_PARTIAL True to "
                "start from them anyway (the unmatched tensors keep their initialisation)."
                + _conversion_hint(given, names)
            )
        if share < 1.0:
            self.logger.info(
                f"Loaded {matched} of {len(names)} parameter tensors ({len(names) - matched} "
                f"unmatched) from {self._loading or 'the weights'}"
                + (" (backbone-only weights)" if checkpoint.get("backbone_only") else "")
            )
        return incompatible
