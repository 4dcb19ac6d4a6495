"""Parameter counts at paper widths (no forward pass: building is enough)."""

from __future__ import annotations

import pytest
from modeling_utils import MODEL_CONFIGS, build, count_parameters

# (config, extra options, paper count): FCN-8s VGG16 and DeconvNet for PASCAL's 21 classes,
# U-Net for 3 input channels and 2 classes (reference.md).
PAPER_COUNTS = [
    ("fcn8s", ("MODEL.SEM_SEG_HEAD.NUM_CLASSES", 21), 134e6),
    ("deconvnet", ("MODEL.SEM_SEG_HEAD.NUM_CLASSES", 21), 252e6),
    ("unet", ("MODEL.UNET.BILINEAR", False), 31.0e6),
    ("unet", ("MODEL.UNET.BILINEAR", True), 17.3e6),
]


@pytest.mark.parametrize(
    "name,opts,paper", PAPER_COUNTS, ids=["fcn8s-21", "deconvnet-21", "unet", "unet-bilinear"]
)
def test_paper_parameter_counts(name, opts, paper) -> None:
    n = count_parameters(build(name, None, *opts))
    print(f"{name} {opts}: {n:,} parameters (paper {paper / 1e6:g}M, {100 * (n - paper) / paper:+.2f}%)")
    assert abs(n - paper) / paper < 0.01


def test_config_parameter_counts_are_consistent() -> None:
    """Every config at paper width, 2 classes; relations that follow from the architectures."""
    counts = {name: count_parameters(build(name, None)) for name in MODEL_CONFIGS}
    for name, n in counts.items():
        print(f"{name:18s} {n:>12,d}")
    # Each skip adds a score layer (C x (C_in + 1)) and a learnable 2x upsampling (C x C x 4 x 4).
    assert counts["fcn16s"] - counts["fcn32s"] == 2 * (512 + 1) + 2 * 2 * 16
    assert counts["fcn8s"] - counts["fcn16s"] == 2 * (256 + 1) + 2 * 2 * 16
    # The dilated front-end is VGG16 + one score layer, like FCN-32s (its upsampling is fixed).
    assert counts["dilated_frontend"] == counts["fcn32s"]
    # Context modules on C = 2 maps: 7 dilated 3x3 layers + a 1x1 layer (Yu & Koltun, Table 1).
    assert counts["dilated_basic"] - counts["dilated_frontend"] == 7 * (2 * 2 * 9 + 2) + (2 * 2 + 2)
    # torchvision's fcn_resnet50 / fcn_resnet101 (2 classes, no aux head) have exactly these counts.
    assert counts["fcn_R_50"] == 32_947_266
    assert counts["fcn_R_101"] == 51_939_394
