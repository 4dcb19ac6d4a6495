"""Mixed precision (semseg_heads.amp) through the Trainer and Predictor: key resolution, the
bf16 training step, fp32 losses and outputs, grad-scaler checkpoints, channels-last."""

import logging

import numpy as np
import pytest
import torch
from detectron2.utils.env import seed_all_rng
from tools_helpers import REPO

import semseg_heads.amp as amp_mod
from semseg_heads.amp import (
    AmpSettings,
    AutocastInference,
    MixedPrecisionTrainer,
    amp_settings,
    outputs_to_float32,
)
from semseg_heads.config import get_semseg_heads_cfg
from semseg_heads.engine import Predictor, Trainer

UNET = f"{REPO}/configs/ChairSegments/unet.yaml"
needs_bf16 = pytest.mark.skipif(not amp_mod.cpu_has_native_bf16(), reason="CPU without native bf16")


def unet_cfg(tiny_semseg, out, *opts, iters=2):
    train, val = tiny_semseg
    cfg = get_semseg_heads_cfg(
        UNET,
        [
            "MODEL.DEVICE", "cpu", "MODEL.SEMSEG_HEADS.WIDTH_SCALE", "0.0625", "MODEL.UNET.DEPTH", "2",
            "DATASETS.TRAIN", f"('{train}',)", "DATASETS.TEST", f"('{val}',)",
            "SOLVER.IMS_PER_BATCH", "4", "SOLVER.MAX_ITER", str(iters), "SOLVER.BASE_LR", "0.01",
            "SOLVER.WARMUP_ITERS", "0", "SOLVER.LOG_PERIOD", "1", "SOLVER.CHECKPOINT_PERIOD", "1000",
            "TEST.EVAL_PERIOD", "0", "DATALOADER.NUM_WORKERS", "0", "SEED", "0", "OUTPUT_DIR", str(out),
            *opts,
        ],
    )  # fmt: skip
    return cfg


@pytest.fixture(autouse=True)
def _fresh_log_once():
    amp_mod._logged.clear()


def test_precision_per_device_and_errors():
    cfg = get_semseg_heads_cfg(UNET, ["MODEL.DEVICE", "cpu"])
    assert amp_settings(cfg) == AmpSettings(False, "cpu")
    cfg.SOLVER.AMP.ENABLED = True
    if amp_mod.cpu_has_native_bf16():
        assert amp_settings(cfg).dtype == torch.bfloat16 and not amp_settings(cfg).use_grad_scaler
    cfg.SOLVER.AMP.PRECISION = "float16"
    with pytest.raises(ValueError, match="SOLVER.AMP.PRECISION 'float16' is for CUDA"):
        amp_settings(cfg)
    cfg.SOLVER.AMP.PRECISION = "fp8"
    with pytest.raises(ValueError, match="SOLVER.AMP.PRECISION is 'fp8'"):
        amp_settings(cfg)
    cuda = get_semseg_heads_cfg(UNET, ["MODEL.DEVICE", "cuda", "SOLVER.AMP.ENABLED", "True"])
    settings = amp_settings(cuda)  # resolution only; nothing runs on the GPU here
    assert settings.dtype == torch.float16 and settings.use_grad_scaler


def test_cpu_without_bf16_logs_once_and_runs_fp32(monkeypatch, caplog):
    monkeypatch.setattr(amp_mod, "cpu_has_native_bf16", lambda: False)
    cfg = get_semseg_heads_cfg(UNET, ["MODEL.DEVICE", "cpu", "SOLVER.AMP.ENABLED", "True"])
    with caplog.at_level(logging.WARNING, logger="semseg_heads.amp"):
        assert not amp_settings(cfg).enabled
        assert not amp_settings(cfg).enabled
    lines = [r for r in caplog.records if "no native bfloat16" in r.getMessage()]
    assert len(lines) == 1 and "running float32" in lines[0].getMessage()


def _losses(trainer):
    from detectron2.engine import HookBase

    seen = []

    class Record(HookBase):
        def after_step(self):
            seen.append(self.trainer.storage.history("total_loss").latest())

    trainer.register_hooks([Record()])
    trainer.resume_or_load(resume=False)
    trainer.train()
    return seen


@needs_bf16
def test_bf16_run_trains_like_fp32(tiny_semseg, tmp_path):
    runs = {}
    for enabled in (False, True):
        cfg = unet_cfg(tiny_semseg, tmp_path / str(enabled), "SOLVER.AMP.ENABLED", str(enabled), iters=12)
        torch.manual_seed(0)
        trainer = Trainer(cfg)
        assert isinstance(trainer.mixed_precision, MixedPrecisionTrainer) == enabled
        assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # master weights
        runs[enabled] = _losses(trainer)
    fp32, bf16 = np.array(runs[False]), np.array(runs[True])
    assert bf16[0] == pytest.approx(fp32[0], rel=0.05)  # same start (same weights and batch)
    assert bf16[-3:].mean() < 0.8 * bf16[:3].mean()  # it learns ...
    assert bf16[-3:].mean() == pytest.approx(fp32[-3:].mean(), rel=0.25)  # ... as fp32 does


@needs_bf16
def test_losses_and_outputs_stay_float32(tiny_semseg, tmp_path):
    cfg = unet_cfg(tiny_semseg, tmp_path, "SOLVER.AMP.ENABLED", "True")
    trainer = Trainer(cfg)
    model = trainer.model
    batch = next(iter(Trainer.build_train_loader(cfg)))
    with amp_settings(cfg).autocast():
        conv_out = model.backbone(torch.zeros(1, 3, 64, 64))
        losses = model(batch)
    assert any(v.dtype == torch.bfloat16 for v in conv_out.values())  # autocast is on ...
    assert all(v.dtype == torch.float32 for v in losses.values())  # ... the loss is not
    model.eval()
    infer = AutocastInference(model, amp_settings(cfg))
    with torch.no_grad():
        out = infer([{"image": batch[0]["image"], "height": 64, "width": 64}])
    assert out[0]["sem_seg"].dtype == torch.float32
    # Evaluation runs the same way and scores.
    res = Trainer.test(cfg, model)
    assert np.isfinite(res["chair_segments"]["IoU"])


def test_outputs_to_float32_walks_containers():
    from detectron2.structures import Boxes, Instances

    inst = Instances((4, 4), scores=torch.ones(2, dtype=torch.bfloat16),
                     pred_boxes=Boxes(torch.zeros(2, 4, dtype=torch.bfloat16)),
                     pred_classes=torch.zeros(2, dtype=torch.long))  # fmt: skip
    out = outputs_to_float32([{"sem_seg": torch.zeros(2, 2, dtype=torch.bfloat16), "instances": inst}])
    assert out[0]["sem_seg"].dtype == torch.float32
    assert inst.scores.dtype == torch.float32 and inst.pred_boxes.tensor.dtype == torch.float32
    assert inst.pred_classes.dtype == torch.long


@needs_bf16
def test_predictor_runs_under_autocast_with_fp32_output(tiny_semseg, tmp_path):
    cfg = unet_cfg(tiny_semseg, tmp_path, "SOLVER.AMP.ENABLED", "True")
    predictor = Predictor(cfg)
    assert predictor.amp.enabled
    conv = next(m for m in predictor.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)  # MODEL.CHANNELS_LAST
    out = predictor(np.zeros((64, 64, 3), np.uint8))
    assert out["sem_seg"].dtype == torch.float32 and out["sem_seg"].shape == (2, 64, 64)


def test_channels_last_key(tiny_semseg, tmp_path):
    for on in (True, False):
        model = Trainer.build_model(unet_cfg(tiny_semseg, tmp_path, "MODEL.CHANNELS_LAST", str(on)))
        convs = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
        assert all(w.is_contiguous(memory_format=torch.channels_last) == on for w in convs if w.shape[-1] > 1)


def test_grad_scaler_state_is_checkpointed_and_resumed(tiny_semseg, tmp_path, monkeypatch, caplog):
    """float16 with a GradScaler (CUDA's path, run here on the CPU's float16 autocast): the
    scaler state goes into the checkpoint in v0.6's layout (top level) or main's ("_trainer")
    and comes back on resume."""
    import semseg_heads.engine as engine

    fp16 = AmpSettings(True, "cpu", torch.float16)
    monkeypatch.setattr(
        engine, "amp_settings", lambda cfg: fp16 if cfg.SOLVER.AMP.ENABLED else AmpSettings(False, "cpu")
    )
    cfg = unet_cfg(tiny_semseg, tmp_path, "SOLVER.AMP.ENABLED", "True", iters=3)
    trainer = Trainer(cfg)
    assert trainer.mixed_precision.amp.use_grad_scaler
    trainer.resume_or_load(resume=False)
    trainer.train()
    trainer.mixed_precision.grad_scaler.update(1234.0)  # a recognisable scale
    state = trainer.state_dict()
    layout = state["_trainer"] if "_trainer" in state else state
    assert layout["grad_scaler"]["scale"] == 1234.0
    trainer.checkpointer.save("model_final")

    resumed = Trainer(cfg)
    resumed.resume_or_load(resume=True)
    assert resumed.mixed_precision.grad_scaler.get_scale() == 1234.0

    # A float16 run resumed from a checkpoint without scaler state keeps a fresh scaler, and says so.
    sd = trainer.mixed_precision.state_dict()
    sd.pop("grad_scaler")
    fresh = Trainer(cfg)
    with caplog.at_level(logging.WARNING, logger="semseg_heads.amp"):
        fresh.mixed_precision.load_state_dict(sd)
    assert fresh.mixed_precision.grad_scaler.get_scale() == 65536.0  # GradScaler's initial scale
    assert "no grad-scaler state" in caplog.text


@pytest.mark.parametrize("precision", ["float32", pytest.param("bfloat16", marks=needs_bf16)])
def test_load_during_backward_trains_on_the_same_batches(tiny_semseg, tmp_path, precision):
    """DATALOADER.LOAD_DURING_BACKWARD: the step asks for the next batch as its backward pass
    starts; float32 runs get the same step without autocast; the losses are the run's without
    the key, to the bit (same batches, same order, same augmentations)."""
    amp = ["SOLVER.AMP.ENABLED", str(precision == "bfloat16")]
    runs, events = {}, []
    for on in (False, True):
        key = ["DATALOADER.LOAD_DURING_BACKWARD", str(on)]
        cfg = unet_cfg(tiny_semseg, tmp_path / str(on), *amp, *key, iters=6)
        seed_all_rng(0)  # weights, and the loader's flips (numpy's generator)
        trainer = Trainer(cfg)
        if on:
            assert isinstance(trainer.mixed_precision, MixedPrecisionTrainer)
            loader_iter = trainer._trainer._data_loader_iter

            def record_load_next(load_next=loader_iter.load_next):
                events.append("load_next")
                load_next()

            loader_iter.load_next = record_load_next
            first = next(trainer.model.parameters())
            first.register_hook(lambda g: events.append("backward") or g)
        runs[on] = _losses(trainer)
    assert runs[True] == runs[False]
    # The first batch is asked for by the first next(); each later one before a backward pass.
    assert events == ["load_next"] + ["load_next", "backward"] * 6
