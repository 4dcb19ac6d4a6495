"""``MODEL.UNET.DROPOUT``: U-Net's dropout at the end of the contracting path (Sec. 3.1)."""

from __future__ import annotations

import pytest
import torch
from detectron2.layers import ShapeSpec

from semseg_heads.config import get_semseg_heads_cfg
from semseg_heads.modeling import UNetEncoder, build_unet_backbone


def _pair(dropout: float) -> tuple[UNetEncoder, UNetEncoder]:
    torch.manual_seed(0)
    plain = UNetEncoder(base_width=4, depth=2)
    torch.manual_seed(0)
    return plain, UNetEncoder(base_width=4, depth=2, dropout=dropout)


def test_training_drops_the_bottleneck_only():
    plain, dropped = _pair(0.5)
    plain.train(), dropped.train()
    x = torch.randn(2, 3, 16, 16)
    a, b = plain(x), dropped(x)
    for name in ("level0", "level1"):
        torch.testing.assert_close(b[name], a[name])
    bottleneck, kept = a["level2"], b["level2"]
    active = bottleneck != 0  # after ReLU
    zeroed = (kept == 0) & active
    assert 0.3 < zeroed.sum() / active.sum() < 0.7
    # Survivors are scaled by 1 / (1 - p), so the expectation is unchanged.
    torch.testing.assert_close(kept[active & ~zeroed], 2 * bottleneck[active & ~zeroed])


def test_inference_and_weights_are_those_without_dropout():
    plain, dropped = _pair(0.5)
    plain.eval(), dropped.eval()
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(dropped(x)["level2"], plain(x)["level2"])
    assert dropped.state_dict().keys() == plain.state_dict().keys()


def test_config_key_builds_it_and_zero_turns_it_off():
    cfg = get_semseg_heads_cfg()
    cfg.MODEL.UNET.BASE_WIDTH, cfg.MODEL.UNET.DEPTH = 4, 2
    assert build_unet_backbone(cfg, ShapeSpec(channels=3)).dropout is None
    cfg.MODEL.UNET.DROPOUT = 0.25
    assert build_unet_backbone(cfg, ShapeSpec(channels=3)).dropout.p == 0.25


@pytest.mark.parametrize("rate", [-0.1, 1.0])
def test_a_rate_outside_zero_to_one_names_the_key(rate):
    with pytest.raises(ValueError, match=r"MODEL\.UNET\.DROPOUT must be in \[0, 1\)"):
        UNetEncoder(base_width=4, depth=2, dropout=rate)
