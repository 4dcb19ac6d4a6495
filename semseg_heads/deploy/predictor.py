"""``ONNXPredictor``: an exported graph behind ``Predictor``'s interface, run by ONNX Runtime.

One BGR ``uint8`` image ``(H, W, 3)`` in, ``{"sem_seg": Tensor(C, H, W)}`` logits out, with the
same steps as Detectron2's ``DefaultPredictor`` around the model: channel order, resize by
``INPUT.MIN_SIZE_TEST`` / ``MAX_SIZE_TEST`` (``ResizeShortestEdge``), and the bilinear resize of
the logits back to the original size that ``sem_seg_postprocess`` makes. The settings come
from the sidecar JSON that ``export_model`` wrote beside the graph.

``TEST.INFERENCE_MODE`` "whole" / "slide" (recorded in the sidecar's ``preprocessing.inference``
at export, or given as ``inference=``) runs without the resize: the image at native resolution
in one run of the graph, or in tiles, each a run of the graph, blended by the same
``sliding_window.infer_logits`` the eager models use.
"""

from __future__ import annotations

import json
import os
from typing import Any

import detectron2.data.transforms as T
import numpy as np
import torch
from detectron2.data.catalog import Metadata
from torch.nn import functional as F

from semseg_heads.modeling.sliding_window import InferenceSettings, infer_logits

from .export import sidecar_path

__all__ = ["ONNXPredictor", "load_sidecar", "ort_session"]


def load_sidecar(model_path: str) -> dict[str, Any]:
    """The ``<model>.json`` written at export; a clear error when it is missing or malformed."""
    path = sidecar_path(model_path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"'{path}' does not exist: ONNXPredictor reads the pre-processing settings from the "
            f"JSON that tools/export_model.py writes beside '{model_path}'"
        )
    with open(path) as f:
        try:
            side = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"'{path}' is not valid JSON: {e}") from e
    for key in ("inputs", "outputs", "preprocessing", "classes"):
        if key not in side:
            raise ValueError(f"'{path}' has no '{key}': re-export the model with tools/export_model.py")
    return side


def ort_session(model_path: str, num_threads: int | None = None, optimization: str = "all") -> Any:
    """An ONNX Runtime CPU session; ``num_threads`` defaults to torch's intra-op thread count so
    that timings beside eager PyTorch compare like with like."""
    import onnxruntime as ort

    if not os.path.isfile(model_path):
        raise FileNotFoundError(f"ONNX model '{model_path}' does not exist")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = num_threads or torch.get_num_threads()
    levels = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    if optimization not in levels:
        raise ValueError(f"optimization must be one of {sorted(levels)}, got {optimization!r}")
    opts.graph_optimization_level = levels[optimization]
    try:
        return ort.InferenceSession(model_path, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
        raise ValueError(f"ONNX Runtime cannot load '{model_path}': {e}") from e


class ONNXPredictor:
    """``Predictor`` for an exported ``.onnx`` file (see the module doc)."""

    def __init__(
        self, model_path: str, num_threads: int | None = None, inference: InferenceSettings | None = None
    ):
        self.model_path = model_path
        self.sidecar = load_sidecar(model_path)
        pre = self.sidecar["preprocessing"]
        self.input_format = self.sidecar["inputs"][0]["channel_order"]
        if self.input_format not in ("RGB", "BGR"):
            raise ValueError(f"'{sidecar_path(model_path)}': channel_order must be RGB or BGR")
        self.aug = T.ResizeShortestEdge([pre["min_size_test"], pre["min_size_test"]], pre["max_size_test"])
        if inference is None:
            # Graphs exported before the key existed resize, as every predictor did then.
            recorded = pre.get("inference", {"mode": "resize"})
            try:
                inference = InferenceSettings(**recorded)
            except (TypeError, ValueError) as e:
                raise ValueError(
                    f"'{sidecar_path(model_path)}': preprocessing.inference {recorded} is not usable "
                    f"({e}); re-export the model with tools/export_model.py"
                ) from e
        self.inference = inference
        self.session = ort_session(model_path, num_threads)
        kwargs: dict[str, Any] = {"stuff_classes": list(self.sidecar["classes"])}
        if self.sidecar.get("colors"):
            kwargs["stuff_colors"] = [list(c) for c in self.sidecar["colors"]]
        self.metadata = Metadata(name=os.path.basename(model_path), **kwargs)

    def preprocess(self, original_image: np.ndarray, resize: bool = True) -> np.ndarray:
        """BGR ``(H, W, 3)`` uint8 -> the graph's ``(1, 3, h, w)`` float32 input (``resize``: by
        ``min_size_test``, as in mode "resize")."""
        if (
            not isinstance(original_image, np.ndarray)
            or original_image.ndim != 3
            or original_image.shape[2] != 3
        ):
            shape = getattr(original_image, "shape", type(original_image).__name__)
            raise ValueError(f"ONNXPredictor takes a BGR image (H, W, 3); got {shape}")
        if self.input_format == "RGB":
            original_image = original_image[:, :, ::-1]
        image = original_image
        if resize:
            image = self.aug.get_transform(original_image).apply_image(original_image)
        return np.ascontiguousarray(image.astype("float32").transpose(2, 0, 1))[None]

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The graph itself: ``(N, 3, h, w)`` float32 -> logits ``(N, C, h, w)``."""
        return self.session.run(["sem_seg"], {"image": batch})[0]

    def _run_tensor(self, batch: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.run(np.ascontiguousarray(batch.numpy(), dtype=np.float32)))

    def __call__(
        self, original_image: np.ndarray, inference: InferenceSettings | None = None
    ) -> dict[str, torch.Tensor]:
        """``{"sem_seg": (C, H, W) logits}``; ``inference`` overrides the settings for this call."""
        settings = inference or self.inference
        height, width = original_image.shape[:2]
        batch = self.preprocess(original_image, resize=settings.mode == "resize")
        if settings.mode == "resize":
            logits = torch.from_numpy(self.run(batch))
        else:
            logits = infer_logits(self._run_tensor, torch.from_numpy(batch), settings)
        if logits.shape[-2:] != (height, width):
            # sem_seg_postprocess's resize, so the result equals Predictor's.
            logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
        return {"sem_seg": logits[0]}
