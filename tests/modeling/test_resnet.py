"""``MODEL.RESNETS.ZERO_INIT_RESIDUAL`` of the dilated ResNet (FCN-ResNet50/101): every residual
block starts as its shortcut (Goyal et al. 2017, Sec. 5.1)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from modeling_utils import build

from semseg_heads.modeling import DilatedResNet


def _blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    backbone = model.backbone
    assert isinstance(backbone, DilatedResNet)
    return [block for stage in backbone.stages for block in stage]


def test_zero_init_residual_makes_every_block_its_shortcut() -> None:
    model = build("fcn_R_50", 0.0625, "MODEL.RESNETS.ZERO_INIT_RESIDUAL", True).eval()
    blocks = _blocks(model)
    assert len(blocks) == 16
    torch.manual_seed(0)
    for block in blocks:
        assert torch.count_nonzero(block.conv3.norm.weight) == 0
        x = torch.randn(1, block.in_channels, 8, 8)
        shortcut = block.shortcut(x) if block.shortcut is not None else x
        torch.testing.assert_close(block(x), F.relu(shortcut))


def test_default_keeps_detectron2_initialisation() -> None:
    model = build("fcn_R_50", 0.0625)
    assert all(torch.all(block.conv3.norm.weight == 1) for block in _blocks(model))


def test_zero_init_residual_without_norm_names_the_key() -> None:
    with pytest.raises(ValueError, match="MODEL.RESNETS.NORM"):
        build("fcn_R_50", 0.0625, "MODEL.RESNETS.ZERO_INIT_RESIDUAL", True, "MODEL.RESNETS.NORM", "")
