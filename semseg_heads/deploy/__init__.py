"""Deployment: export to ONNX / TorchScript with its check, and ONNX Runtime inference.

``onnx``, ``onnxscript`` and ``onnxruntime`` are the optional ``deploy`` extra
(``pip install -e .[deploy]``); they are imported only where used, so importing this package
needs only the core dependencies. The browser demo is the Chair Segments project's
(``chairseg.serve``).
"""

from .export import (
    CHECK_SIZES,
    ExportCheckError,
    ExportError,
    ExportReport,
    SizeCheck,
    build_export_model,
    check_export,
    export_model,
    locate_unexportable_layer,
    sidecar_path,
)
from .predictor import ONNXPredictor, load_sidecar, ort_session
from .wrapper import SemSegExportWrapper

__all__ = [
    "CHECK_SIZES",
    "ExportCheckError",
    "ExportError",
    "ExportReport",
    "ONNXPredictor",
    "SemSegExportWrapper",
    "SizeCheck",
    "build_export_model",
    "check_export",
    "export_model",
    "load_sidecar",
    "locate_unexportable_layer",
    "ort_session",
    "sidecar_path",
]
