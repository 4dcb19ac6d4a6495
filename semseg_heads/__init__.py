"""semseg_heads: FCN, U-Net, DeconvNet and the dilated context network for Detectron2.

Importing the package registers its meta-architectures, backbones and heads in
Detectron2's registries and the builtin Chair Segments datasets. Importing it twice is
harmless: Python runs each module once, and dataset registration skips names it made.
"""

from semseg_heads import data, evaluation, modeling  # noqa: F401  (registers everything)
from semseg_heads.config import add_semseg_heads_config

__all__ = ["add_semseg_heads_config"]
__version__ = "0.1.0"
