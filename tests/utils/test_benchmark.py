"""semseg_heads.utils.benchmark: the measuring helpers behind tools/benchmark.py and the study."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from detectron2.modeling import build_model

from semseg_heads.config import get_semseg_heads_cfg
from semseg_heads.utils import benchmark as bm

CONFIG = Path(__file__).resolve().parents[2] / "configs/ChairSegments/unet.yaml"


def _unet(width: float = 0.0625) -> torch.nn.Module:
    opts = ["MODEL.DEVICE", "cpu", "MODEL.SEMSEG_HEADS.WIDTH_SCALE", str(width)]
    cfg = get_semseg_heads_cfg(str(CONFIG), opts)
    torch.manual_seed(0)
    return build_model(cfg)


def test_summarize_and_timing_helpers() -> None:
    s = bm.summarize([3.0, 1.0, 2.0])
    assert s == {"n": 3, "mean_s": 2.0, "median_s": 2.0, "min_s": 1.0}
    calls = []
    times = bm.time_calls(lambda: calls.append(1), warmup=2, iters=3)
    assert len(times) == 3 and len(calls) == 5 and all(t >= 0 for t in times)
    seen: list[str] = []
    out = bm.time_interleaved({"a": lambda: seen.append("a"), "b": lambda: seen.append("b")}, 1, 2, 2)
    assert {k: len(v) for k, v in out.items()} == {"a": 4, "b": 4}
    assert seen == ["a", "b"] + ["a", "a", "b", "b"] * 2  # warm-up, then alternating blocks


def test_count_parameters_is_fvcores_and_counts_shared_tensors_once() -> None:
    lin = torch.nn.Linear(3, 4)
    shared = torch.nn.Sequential(lin, torch.nn.ReLU(), lin)
    assert bm.count_parameters(lin) == 16
    assert bm.count_parameters(shared) == 16
    model = _unet()
    assert bm.count_parameters(model) == sum(p.numel() for p in model.parameters())


def test_gmacs_of_the_unet_match_its_convolutions() -> None:
    model = _unet()
    item = {"image": torch.rand(3, 64, 64) * 255, "height": 64, "width": 64}
    gmacs = bm.count_gmacs(model, [item])
    # Every 3x3/1x1/2x2 conv and transposed conv: fvcore counts one multiply-add per kernel tap.
    macs = []

    def hook(mod, inp, out):
        k = mod.weight[0].numel() if isinstance(mod, torch.nn.Conv2d) else mod.weight[:, 0].numel()
        macs.append(out.numel() * k if isinstance(mod, torch.nn.Conv2d) else inp[0].numel() * k)

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))
    ]
    with torch.no_grad():
        model.eval()([item])
    for h in handles:
        h.remove()
    assert gmacs == pytest.approx(sum(macs) / 1e9, rel=0.02)
    assert bm.peak_rss_mb() > 0 and bm.peak_gpu_mb("cpu") is None


def test_bare_network_is_head_layers_on_backbone_and_refuses_other_models() -> None:
    model = _unet().eval()
    bare = bm.bare_network(model)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(bare(x), model.sem_seg_head.layers(model.backbone(x)))
    with pytest.raises(TypeError, match="sem_seg_head.layers"):
        bm.bare_network(torch.nn.Linear(2, 2))
