"""Safe checkpoint loading for Detectron2's checkpointer.

Detectron2 v0.6 unpickles ``.pkl`` files with plain ``pickle`` and ``.pth`` files with a
``torch.load`` whose defaults depend on the torch release; unpickling runs whatever code the
file names. ``SafeDetectionCheckpointer`` only accepts tensors, numpy arrays and plain
containers: ``.pth``/``.pyth`` go through ``torch.load(weights_only=True)`` and ``.pkl``
through an unpickler that allows numpy's array constructors and nothing else. A truncated,
corrupt or unsafe file gives a ``CheckpointLoadError`` naming the file, not a traceback from
deep inside pickle.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from typing import Any

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.utils.file_io import PathManager

__all__ = ["CheckpointLoadError", "SafeDetectionCheckpointer", "load_checkpoint_file"]


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


def load_checkpoint_file(path: str) -> Any:
    """Load ``path`` safely: tensors, numpy arrays and plain containers only.

    Raises:
        CheckpointLoadError: the file is empty, truncated, not a checkpoint, or names Python
            objects other than tensors/arrays (which ``weights_only`` loading refuses).
    """
    path = PathManager.get_local_path(path)
    if os.path.getsize(path) == 0:
        raise CheckpointLoadError(f"checkpoint '{path}' is empty. {_hint(path)}")
    try:
        if path.endswith(".pkl"):
            with open(path, "rb") as f:
                return _ArraysOnlyUnpickler(f, encoding="latin1").load()
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "refusing" in str(e) or "Weights only load failed" in str(e):
            raise CheckpointLoadError(
                f"checkpoint '{path}' holds Python objects other than tensors and plain "
                f"containers, which could run arbitrary code; it was not loaded. ({e})"
            ) from None
        raise CheckpointLoadError(
            f"checkpoint '{path}' is corrupt (not a valid pickle: {e}). {_hint(path)}"
        ) from None
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile, IndexError, KeyError) as e:
        raise CheckpointLoadError(
            f"checkpoint '{path}' is corrupt or truncated ({type(e).__name__}: {e}). {_hint(path)}"
        ) from None


class SafeDetectionCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` whose file loading is ``load_checkpoint_file``.

    Keeps Detectron2's handling of the formats it reads: native ``.pth`` checkpoints,
    Detectron2/Caffe2 model-zoo ``.pkl`` files and pycls ``.pyth`` files.
    """

    def load(self, path: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if path and "://" not in path and not os.path.isfile(path):
            raise FileNotFoundError(
                f"checkpoint '{path}' does not exist (MODEL.WEIGHTS or the output folder's "
                "'last_checkpoint')"
            )
        return super().load(path, *args, **kwargs)

    def _load_file(self, filename: str) -> dict[str, Any]:
        data = load_checkpoint_file(filename)
        if not isinstance(data, dict):
            raise CheckpointLoadError(
                f"checkpoint '{filename}' holds a {type(data).__name__}; expected a dict "
                "(a state dict, or Detectron2's {'model': state_dict, ...})"
            )
        if filename.endswith(".pkl"):
            if "model" in data and "__author__" in data:  # Detectron2 model-zoo format
                self.logger.info(f"Reading a file from '{data['__author__']}'")
                return data
            # Caffe2 / Detectron1 model zoo: detection models keep their arrays under "blobs".
            data = data.get("blobs", data)
            data = {k: v for k, v in data.items() if not k.endswith("_momentum")}
            return {"model": data, "__author__": "Caffe2", "matching_heuristics": True}
        if filename.endswith(".pyth"):  # pycls
            if "model_state" not in data:
                raise CheckpointLoadError(f"pycls checkpoint '{filename}' has no 'model_state'")
            state = {k: v for k, v in data["model_state"].items() if not k.endswith("num_batches_tracked")}
            return {"model": state, "__author__": "pycls", "matching_heuristics": True}
        return data if "model" in data else {"model": data}
