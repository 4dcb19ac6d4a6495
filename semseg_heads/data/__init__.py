"""Chair Segments and user datasets: registration, generation, validation, download.

Importing this package registers the builtin Chair Segments names (``chair_segments_{32,64,128}_
{train,val,test}`` and their ``_instance`` twins) for ``$DETECTRON2_DATASETS/ChairSegments``
without touching the disk; data is read when a dataset is first loaded. The procedural
generator (``synthetic``/``backgrounds``, a renderer) is imported only when
``generate_chair_segments`` is first used: training on real data never loads it.
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
    "generate_chair_segments",
    "register_chair_segments",
    "register_folder_dataset",
    "validate_chair_segments",
    "validate_folder_dataset",
]


def __getattr__(name: str):
    # PEP 562: the generator is imported on first use, not with the package.
    if name == "generate_chair_segments":
        from semseg_heads.data.synthetic import generate_chair_segments

        return generate_chair_segments
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
