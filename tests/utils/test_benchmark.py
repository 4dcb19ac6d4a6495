"""chairseg.measure: the measuring helpers (timing) and the overhead benchmark behind
tools/benchmark.py and the study."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from detectron2.modeling import build_model

from chairseg.measure import benchmark as bm
from chairseg.measure import timing
from semseg_heads.config import get_semseg_heads_cfg

CONFIG = Path(__file__).resolve().parents[2] / "configs/ChairSegments/unet.yaml"


def _unet(width: float = 0.0625) -> torch.nn.Module:
    opts = ["MODEL.DEVICE", "cpu", "MODEL.SEMSEG_HEADS.WIDTH_SCALE", str(width)]
    cfg = get_semseg_heads_cfg(str(CONFIG), opts)
    torch.manual_seed(0)
    return build_model(cfg)


def test_summarize_and_timing_helpers() -> None:
    s = timing.summarize([3.0, 1.0, 2.0])
    assert s == {"n": 3, "mean_s": 2.0, "median_s": 2.0, "min_s": 1.0}
    calls = []
    times = timing.time_calls(lambda: calls.append(1), warmup=2, iters=3)
    assert len(times) == 3 and len(calls) == 5 and all(t >= 0 for t in times)
    seen: list[str] = []
    out = timing.time_interleaved({"a": lambda: seen.append("a"), "b": lambda: seen.append("b")}, 1, 2, 2)
    assert {k: len(v) for k, v in out.items()} == {"a": 4, "b": 4}
    assert seen == ["a", "b"] + ["a", "a", "b", "b"] * 2  # warm-up, then alternating blocks


def test_count_parameters_is_fvcores_and_counts_shared_tensors_once() -> None:
    lin = torch.nn.Linear(3, 4)
    shared = torch.nn.Sequential(lin, torch.nn.ReLU(), lin)
    assert timing.count_parameters(lin) == 16
    assert timing.count_parameters(shared) == 16
    model = _unet()
    assert timing.count_parameters(model) == sum(p.numel() for p in model.parameters())


def test_gmacs_of_deconvnet_count_through_its_unpooling() -> None:
    """fvcore traces F.max_unpool2d; the counter gets past its size check without replacing
    anything in torch.nn.functional."""
    import torch.nn.functional as F

    before = {k: v for k, v in vars(F).items() if k != "__warningregistry__"}  # Python's own
    cfg = get_semseg_heads_cfg(
        str(CONFIG.parent / "deconvnet.yaml"),
        ["MODEL.DEVICE", "cpu", "MODEL.SEMSEG_HEADS.WIDTH_SCALE", "0.0625"],
    )
    model = build_model(cfg)
    item = {"image": torch.rand(3, 64, 64) * 255, "height": 64, "width": 64}
    gmacs = bm.count_gmacs(model, [item])
    assert gmacs > 0 and all(vars(F)[k] is v for k, v in before.items())
    with torch.no_grad():  # and the model's own unpooling is untouched by the counting
        assert model.eval()([item])[0]["sem_seg"].shape == (2, 64, 64)


def test_gmacs_of_the_unet_match_its_convolutions() -> None:
    model = _unet()
    item = {"image": torch.rand(3, 64, 64) * 255, "height": 64, "width": 64}
    gmacs = timing.count_gmacs(model, [item])
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
    assert timing.peak_rss_mb() > 0 and timing.peak_gpu_mb("cpu") is None


def test_bare_network_is_head_layers_on_backbone_and_refuses_other_models() -> None:
    model = _unet().eval()
    bare = timing.bare_network(model)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(bare(x), model.sem_seg_head.layers(model.backbone(x)))
    with pytest.raises(TypeError, match="sem_seg_head.layers"):
        timing.bare_network(torch.nn.Linear(2, 2))


def test_bare_loss_is_the_heads_own_loss() -> None:
    cfg = get_semseg_heads_cfg(
        str(CONFIG.parent / "recipes" / "unet_border_lovasz_ema.yaml"),
        ["MODEL.DEVICE", "cpu", "MODEL.SEMSEG_HEADS.WIDTH_SCALE", "0.0625", "MODEL.CHANNELS_LAST", "False"],
    )
    torch.manual_seed(0)
    model = build_model(cfg).train()
    labels = torch.zeros(2, 64, 64, dtype=torch.long)
    labels[:, 20:40, 10:50] = 1
    batch = [
        {"image": torch.rand(3, 64, 64) * 255, "sem_seg": lab, "height": 64, "width": 64} for lab in labels
    ]
    images = (torch.stack([d["image"] for d in batch]) - model.pixel_mean) / model.pixel_std
    with torch.no_grad():
        expected = sum(model(batch).values())  # border-weighted cross-entropy + Lovász
        logits = timing.bare_network(model)(images)
        got = bm.bare_loss(model, logits, labels, 255)
        plain = torch.nn.functional.cross_entropy(logits, labels)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    assert abs(got.item() - plain.item()) > 1e-3  # not plain cross-entropy
    assert bm.bare_loss(torch.nn.Linear(2, 2), torch.zeros(1, 2, 1, 1), torch.zeros(1, 1, 1).long(), 255) > 0


def test_variant_names_map_to_the_amp_keys() -> None:
    assert bm.variant_opts("fp32") == [
        "SOLVER.AMP.ENABLED", "False", "SOLVER.AMP.PRECISION", "", "MODEL.CHANNELS_LAST", "False",
    ]  # fmt: skip
    assert bm.variant_opts("bf16+cl")[1::2] == ["True", "bfloat16", "True"]
    assert bm.variant_opts("fp16")[1::2] == ["True", "float16", "False"]
    for bad in ("int8", "bf16+nhwc"):
        with pytest.raises(ValueError, match="expected <precision>"):
            bm.variant_opts(bad)


def test_run_benchmark_reports_every_variant(tmp_path, monkeypatch) -> None:
    """A tiny end-to-end run: one row per variant, each against its own bare loop."""
    s = bm.BenchmarkSettings(
        config_file=str(CONFIG),
        opts=["MODEL.SEMSEG_HEADS.WIDTH_SCALE", "0.0625", "MODEL.UNET.DEPTH", "2",
              "DATALOADER.CACHE_IMAGES", "True", "DATALOADER.NUM_WORKERS", "-1"],
        variants=["fp32", "fp32+cl"], batch=2, iters=1, infer_iters=1, loader_batches=1,
        warmup=1, block=1, threads=1, generate_into=str(tmp_path / "ChairSegments"),
    )  # fmt: skip
    ceiling = {"shape": "x", "median_s": 1.0, "gflops": 1.0}
    monkeypatch.setattr(bm, "conv_ceiling", lambda *a, **k: ceiling)  # large convs: not tested here
    r = bm.run_benchmark(s)
    assert set(r["rows"]) == {"fp32", "fp32+cl"} and r["cache_images"] and r["num_workers"] == 0
    assert r["rows"]["fp32+cl"]["ran_as"] == "float32+channels_last"
    for row in r["rows"].values():
        assert row["train_trainer"]["n"] == 1 and row["infer_bare"]["n"] == 1
        assert len(row["trainer_overhead_rounds"]) == r["rounds"] == 1
        assert 0.0 <= row["loader_wait_s"] < row["train_trainer"]["median_s"]  # in-process loading
        assert row["train_model_loop"]["n"] == 1 and len(row["model_loop_overhead_rounds"]) == 1
    assert set(r["channels_last_gain"]) == {"fp32"}  # fp32 beside fp32+cl
    assert set(r["channels_last_gain"]["fp32"]) == {"trainer", "bare"}
    report = bm.format_report(r)
    assert "fp32+cl" in report and "channels-last gain in fp32" in report
    assert "wait ms" in report and "the model called as the trainer calls it" in report


def test_trainer_batches_replace_the_loader(tmp_path, monkeypatch) -> None:
    """--trainer-batches: the trainer steps over batches taken beforehand, the report says so."""
    s = bm.BenchmarkSettings(
        config_file=str(CONFIG),
        opts=["MODEL.SEMSEG_HEADS.WIDTH_SCALE", "0.0625", "MODEL.UNET.DEPTH", "2",
              "DATALOADER.CACHE_IMAGES", "True", "DATALOADER.NUM_WORKERS", "-1"],
        variants=["fp32"], batch=2, iters=2, infer_iters=1, loader_batches=1,
        warmup=1, block=1, threads=1, generate_into=str(tmp_path / "ChairSegments"), trainer_batches=2,
    )  # fmt: skip
    monkeypatch.setattr(bm, "conv_ceiling", lambda *a, **k: {"shape": "x", "median_s": 1.0, "gflops": 1.0})
    r = bm.run_benchmark(s)
    assert r["trainer_batches"] == 2 and r["rows"]["fp32"]["train_trainer"]["n"] == 2
    assert "batches taken from its loader beforehand" in bm.format_report(r)
    cfg = bm._setup_cfg(s, str(tmp_path / "out"), "fp32")
    loader = bm._trainer_class(cfg, 2).build_train_loader(cfg)
    first = [next(loader) for _ in range(4)]
    assert first[0] is first[2] and first[1] is first[3] and first[0] is not first[1]
    assert bm._trainer_class(cfg, 0).__name__ == "Trainer"


def test_rotated_puts_every_block_in_every_position() -> None:
    blocks = ["a/trainer", "a/bare", "a/model"]
    orders = [bm.rotated(blocks, r) for r in range(4)]
    assert orders[0] == blocks and orders[3] == blocks
    assert orders[1] == ["a/bare", "a/model", "a/trainer"]
    assert all(sorted(o) == sorted(blocks) for o in orders)
    assert {o.index("a/trainer") for o in orders[:3]} == {0, 1, 2}
    assert bm.rotated([], 5) == []


def test_round_ratios_pair_each_block_with_its_neighbour() -> None:
    trainer = [1.1, 1.3, 1.2, 2.2, 2.0, 2.4]  # a second round under twice the load
    bare = [1.0, 1.0, 1.0, 2.0, 2.0, 2.0]
    ratios = bm.round_ratios(trainer, bare, 3)
    assert ratios == pytest.approx([0.2, 0.1])
    s = bm.spread(ratios)
    assert s == pytest.approx({"median": 0.15, "min": 0.1, "max": 0.2, "n": 2})
    assert bm.format_spread(s) == "+15.0% [+10.0%, +20.0%]"
    assert bm.format_spread(bm.spread([])) == "-"
    with pytest.raises(ValueError, match="equal counts"):
        bm.round_ratios(trainer, bare[:3], 3)
