"""Chair Segments and user datasets: registration, validation, label maps, caching.

Importing this package registers the builtin Chair Segments names (``chair_segments_{32,64,128}_
{train,val,test}`` and their ``_instance`` twins) for ``$DETECTRON2_DATASETS/ChairSegments``
without touching the disk; data is read when a dataset is first loaded. The procedural
generator and the downloader are the Chair Segments project's (``chairseg.data``).
"""

from semseg_heads.data import chair_segments  # noqa: F401  (registers the builtin names)
from semseg_heads.data.chair_segments import dataset_names, register_chair_segments
from semseg_heads.data.folder import register_folder_dataset
from semseg_heads.data.labelmaps import DatasetError, Problem
from semseg_heads.data.validate import ValidationReport, validate_chair_segments, validate_folder_dataset

__all__ = [
    "DatasetError",
    "Problem",
    "ValidationReport",
    "dataset_names",
    "register_chair_segments",
    "register_folder_dataset",
    "validate_chair_segments",
    "validate_folder_dataset",
]
