"""Trainer / train_net.py with Detectron2's native SemanticSegmentor on a hand-made dataset:
evaluators by evaluator_type, optimizer choice, config loading, kill + --resume."""

import copy
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from detectron2 import model_zoo
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import default_argument_parser
from detectron2.evaluation import COCOEvaluator, SemSegEvaluator
from detectron2.solver import build_lr_scheduler
from PIL import Image
from tools_helpers import REPO

from semseg_heads.checkpoint import load_checkpoint_file
from semseg_heads.compat import compiled_ops_available
from semseg_heads.config import get_semseg_heads_cfg
from semseg_heads.data.prefetch import ThreadPrefetcher
from semseg_heads.engine import Trainer, build_optimizer
from semseg_heads.evaluation import InstancesToSemSegEvaluator, PerImageIoUEvaluator

NATIVE_SEMSEG = model_zoo.get_config_file("Misc/semantic_R_50_FPN_1x.yaml")


def native_opts(train, val, out, max_iter=2):
    """Detectron2's R50-FPN SemanticSegmentor shrunk to the tiny 64x64 two-class dataset."""
    return [
        "MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "",
        "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "2", "MODEL.SEM_SEG_HEAD.IGNORE_VALUE", "255",
        "DATASETS.TRAIN", f"('{train}',)", "DATASETS.TEST", f"('{val}',)",
        "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64",
        "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "64",
        "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", str(max_iter),
        "SOLVER.LOG_PERIOD", "1", "DATALOADER.NUM_WORKERS", "0", "OUTPUT_DIR", str(out),
    ]  # fmt: skip


def parse(*argv):
    return default_argument_parser().parse_args([str(a) for a in argv])


def test_train_then_eval_only(train_net, tiny_semseg, tmp_path):
    train, val = tiny_semseg
    out = tmp_path / "run"
    res = train_net.main(parse("--config-file", NATIVE_SEMSEG, *native_opts(train, val, out)))
    assert (out / "model_final.pth").is_file()
    assert {"sem_seg", "chair_segments"} <= set(res)

    res = train_net.main(
        parse(
            "--config-file",
            NATIVE_SEMSEG,
            "--eval-only",
            *native_opts(train, val, out),
            "MODEL.WEIGHTS",
            out / "model_final.pth",
        )  # fmt: skip
    )
    for key in ("Prec", "IoU", "Dice", "mIoU"):
        assert np.isfinite(res["chair_segments"][key])
    assert res["chair_segments"]["mIoU"] == pytest.approx(res["sem_seg"]["mIoU"])
    log = (out / "log.txt").read_text()
    assert "copypaste: Task: chair_segments" in log and "Prec." in log


def test_checkpoint_max_to_keep_bounds_the_periodic_checkpoints(tiny_semseg, tmp_path):
    """SOLVER.CHECKPOINT_MAX_TO_KEEP 2: the two newest periodic checkpoints and model_final
    stay, the older ones are deleted; last_checkpoint names one that exists."""
    train, val = tiny_semseg
    out = tmp_path / "run"
    opts = native_opts(train, val, out, max_iter=5) + [
        "SOLVER.CHECKPOINT_PERIOD", "1", "SOLVER.CHECKPOINT_MAX_TO_KEEP", "2",
    ]  # fmt: skip
    Trainer(get_semseg_heads_cfg(NATIVE_SEMSEG, opts)).train()
    kept = sorted(p.name for p in out.glob("*.pth"))
    assert kept == ["model_0000003.pth", "model_0000004.pth", "model_final.pth"]
    assert (out / (out / "last_checkpoint").read_text().strip()).is_file()


def test_checkpoint_max_to_keep_refuses_a_negative_count(tiny_semseg, tmp_path):
    train, val = tiny_semseg
    opts = native_opts(train, val, tmp_path / "run") + ["SOLVER.CHECKPOINT_MAX_TO_KEEP", "-1"]
    with pytest.raises(ValueError, match="SOLVER.CHECKPOINT_MAX_TO_KEEP"):
        Trainer(get_semseg_heads_cfg(NATIVE_SEMSEG, opts))


def test_train_returns_the_latest_evaluation(tiny_semseg, tmp_path):
    """The Trainer keeps its evaluation hook's results itself (no read of DefaultTrainer's
    private attribute): train() returns them, with or without TEST.EXPECTED_RESULTS."""
    train, val = tiny_semseg
    opts = native_opts(train, val, tmp_path / "run") + ["TEST.EVAL_PERIOD", "1"]
    trainer = Trainer(get_semseg_heads_cfg(NATIVE_SEMSEG, opts))
    assert trainer.last_eval_results is None
    trainer.resume_or_load(resume=False)
    res = trainer.train()
    assert res is trainer.last_eval_results and {"sem_seg", "chair_segments"} <= set(res)
    expected = ["TEST.EXPECTED_RESULTS", "[['chair_segments', 'Prec', 50.0, 1000.0]]"]
    trainer = Trainer(get_semseg_heads_cfg(NATIVE_SEMSEG, opts + expected))
    trainer.resume_or_load(resume=False)
    assert 0 <= trainer.train()["chair_segments"]["Prec"] <= 100


def test_cuda_device_without_cuda_says_what_to_do(train_net, tiny_semseg, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    opts = native_opts(*tiny_semseg, tmp_path)
    opts[opts.index("cpu")] = "cuda"
    with pytest.raises(SystemExit, match="MODEL.DEVICE cpu"):
        train_net.setup(parse("--config-file", NATIVE_SEMSEG, *opts))


def cfg_for(*opts):
    cfg = get_semseg_heads_cfg(NATIVE_SEMSEG, ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", *opts])
    return cfg


@pytest.mark.parametrize(
    "name, cls", [("SGD", torch.optim.SGD), ("Adam", torch.optim.Adam), ("ADAMW", torch.optim.AdamW)]
)
def test_optimizer_from_config(name, cls):
    cfg = cfg_for("SOLVER.OPTIMIZER", name, "SOLVER.BASE_LR", "0.005")
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    opt = build_optimizer(cfg, model)
    assert isinstance(opt, cls)
    assert all(g["lr"] == 0.005 for g in opt.param_groups)


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_fused_optimizer_matches_the_per_tensor_loop(name):
    """SOLVER.FUSED: PyTorch's fused kernel, the same updates as its per-tensor loop up to
    rounding, for a few steps of Detectron2's parameter groups (weight decay on the convs)."""
    torch.manual_seed(0)
    # No bias before the BN: its gradient would be rounding noise, which Adam scales to lr.
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, bias=False),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.Conv2d(4, 2, 1),
    )
    copies = [copy.deepcopy(model) for _ in range(2)]
    opts = [
        build_optimizer(cfg_for("SOLVER.OPTIMIZER", name, "SOLVER.FUSED", str(fused)), m)
        for fused, m in zip((False, True), copies)
    ]
    assert [o.defaults["fused"] for o in opts] == [None, True]
    x, target = torch.randn(2, 3, 8, 8), torch.randn(2, 2, 6, 6)
    for _ in range(3):
        for m, o in zip(copies, opts):
            o.zero_grad()
            (m(x) - target).square().mean().backward()
            o.step()
    for a, b in zip(copies[0].parameters(), copies[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="SOLVER.FUSED"):
        build_optimizer(cfg_for("SOLVER.FUSED", "True"), model)


def test_unknown_optimizer_is_an_error():
    with pytest.raises(ValueError, match="SOLVER.OPTIMIZER"):
        build_optimizer(cfg_for("SOLVER.OPTIMIZER", "LBFGS"), torch.nn.Conv2d(3, 4, 3))


def _learning_rates(build, cfg, steps):
    opt = build_optimizer(cfg, torch.nn.Conv2d(3, 4, 3))
    sched = build(cfg, opt)
    rates = []
    for _ in range(steps):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return rates


def test_lr_schedule_iters_cuts_detectron2s_schedule():
    """SOLVER.LR_SCHEDULE_ITERS: the first MAX_ITER learning rates of Detectron2's schedule
    (warm-up and cosine) over LR_SCHEDULE_ITERS iterations; 0 is Detectron2's own."""
    keys = ["SOLVER.OPTIMIZER", "Adam", "SOLVER.BASE_LR", "0.003", "SOLVER.LR_SCHEDULER_NAME"]
    keys += ["WarmupCosineLR", "SOLVER.WARMUP_ITERS", "10", "SOLVER.WARMUP_FACTOR", "0.01"]
    ours, detectron2s = Trainer.build_lr_scheduler, build_lr_scheduler
    cut_cfg = cfg_for(*keys, "SOLVER.MAX_ITER", "60", "SOLVER.LR_SCHEDULE_ITERS", "100")
    cut = _learning_rates(ours, cut_cfg, 60)
    assert cut == _learning_rates(detectron2s, cfg_for(*keys, "SOLVER.MAX_ITER", "100"), 60)
    # Cut at 0.6 of its cosine the rate is still a third of its peak; Detectron2's ends near 0.
    assert cut[0] == pytest.approx(0.003 * 0.01) and cut[-1] > 0.3 * 0.003
    own = cfg_for(*keys, "SOLVER.MAX_ITER", "60")
    assert _learning_rates(ours, own, 60) == _learning_rates(detectron2s, own, 60)
    with pytest.raises(ValueError, match="SOLVER.LR_SCHEDULE_ITERS is 50"):
        _learning_rates(ours, cfg_for(*keys, "SOLVER.MAX_ITER", "60", "SOLVER.LR_SCHEDULE_ITERS", "50"), 1)


def test_semantic_evaluators(tiny_semseg, tmp_path):
    _, val = tiny_semseg
    cfg = cfg_for("OUTPUT_DIR", str(tmp_path))
    ev = Trainer.build_evaluator(cfg, val)
    # A binary dataset: Detectron2's SemSegEvaluator with the paper's per-image IoU/Dice added.
    assert type(ev) is PerImageIoUEvaluator and isinstance(ev, SemSegEvaluator)
    MetadataCatalog.get(val).paper_metrics = False  # per dataset, in its metadata
    try:
        assert type(Trainer.build_evaluator(cfg, val)) is SemSegEvaluator
    finally:
        del MetadataCatalog.get(val).paper_metrics


def test_instance_evaluators(tmp_path):
    name = "tools_test_instances"
    m = np.zeros((16, 16), np.uint8)
    m[4:10, 5:9] = 1
    rle = mask_util.encode(np.asfortranarray(m))
    Image.fromarray(m).save(tmp_path / "a.png")
    record = {
        "file_name": str(tmp_path / "a.jpg"), "image_id": 0, "height": 16, "width": 16,
        "sem_seg_file_name": str(tmp_path / "a.png"),
        "annotations": [
            {"bbox": [5, 4, 4, 6], "bbox_mode": 1, "category_id": 0, "segmentation": rle, "iscrowd": 0}
        ],
    }  # fmt: skip
    DatasetCatalog.register(name, lambda: [record])
    MetadataCatalog.get(name).set(
        thing_classes=["chair"],
        stuff_classes=["background", "chair"],
        ignore_label=255,
        evaluator_type="coco",
    )
    try:
        cfg = cfg_for("MODEL.MASK_ON", "True", "OUTPUT_DIR", str(tmp_path))
        ev = Trainer.build_evaluator(cfg, name)
        coco, paper = ev._evaluators
        assert isinstance(coco, COCOEvaluator) and isinstance(paper, InstancesToSemSegEvaluator)
        assert paper._score_threshold == cfg.TEST.INSTANCE_SCORE_THRESH
        assert coco._tasks == ("bbox", "segm")
        assert coco._use_fast_impl == compiled_ops_available()
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_unknown_evaluator_type_names_the_dataset():
    name = "tools_test_no_type"
    DatasetCatalog.register(name, lambda: [])
    try:
        with pytest.raises(ValueError, match=name):
            Trainer.build_evaluator(cfg_for(), name)
    finally:
        DatasetCatalog.remove(name)


def test_model_zoo_base_configs(tmp_path):
    cfg = get_semseg_heads_cfg(os.path.join(REPO, "configs/ChairSegments/mask_rcnn_R_50_FPN.yaml"))
    assert cfg.MODEL.META_ARCHITECTURE == "GeneralizedRCNN"  # from the model zoo
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 1 and cfg.MODEL.MASK_ON
    assert cfg.INPUT.MASK_FORMAT == "bitmask" and cfg.INPUT.MIN_SIZE_TEST == 256
    # A config based on it, by relative path, with an override on top.
    child = tmp_path / "child.yaml"
    base = os.path.relpath(os.path.join(REPO, "configs/ChairSegments/mask_rcnn_R_50_FPN.yaml"), tmp_path)
    child.write_text(f'_BASE_: "{base}"\nSOLVER:\n  BASE_LR: 0.5\n')
    cfg = get_semseg_heads_cfg(str(child), ["SOLVER.MAX_ITER", "7"])
    assert cfg.SOLVER.BASE_LR == 0.5 and cfg.SOLVER.MAX_ITER == 7
    assert cfg.MODEL.ANCHOR_GENERATOR.SIZES == [[16], [32], [64], [128], [256]]


def test_train_loader_keeps_the_dataset_resolution(tiny_semseg):
    train, val = tiny_semseg
    cfg = get_semseg_heads_cfg(NATIVE_SEMSEG, native_opts(train, val, "unused"))
    batch = next(iter(Trainer.build_train_loader(cfg)))
    assert len(batch) == 2
    for d in batch:
        assert tuple(d["image"].shape) == (3, 64, 64) and tuple(d["sem_seg"].shape) == (64, 64)


def test_in_process_train_loader_prefetches_in_a_thread(tiny_semseg):
    """DATALOADER.PREFETCH_BATCHES wraps the in-process loader; 0 (default) leaves Detectron2's
    loader as it is, as do worker processes; a negative count names the key."""
    train, val = tiny_semseg
    opts = native_opts(train, val, "unused") + ["DATALOADER.PREFETCH_BATCHES", "2"]
    loader = Trainer.build_train_loader(get_semseg_heads_cfg(NATIVE_SEMSEG, opts))
    assert isinstance(loader, ThreadPrefetcher) and loader.depth == 2
    assert len(next(iter(loader))) == 2
    default = get_semseg_heads_cfg(NATIVE_SEMSEG, native_opts(train, val, "unused"))
    assert not isinstance(Trainer.build_train_loader(default), ThreadPrefetcher)
    workers = get_semseg_heads_cfg(NATIVE_SEMSEG, opts + ["DATALOADER.NUM_WORKERS", "1"])
    assert not isinstance(Trainer.build_train_loader(workers), ThreadPrefetcher)
    bad = get_semseg_heads_cfg(NATIVE_SEMSEG, opts + ["DATALOADER.PREFETCH_BATCHES", "-1"])
    with pytest.raises(ValueError, match="DATALOADER.PREFETCH_BATCHES"):
        Trainer.build_train_loader(bad)


def test_in_process_train_loader_loads_during_backward_on_demand(tiny_semseg):
    """DATALOADER.LOAD_DURING_BACKWARD wraps the in-process loader to load one batch when
    asked; worker processes are left alone; with PREFETCH_BATCHES too, both keys are named."""
    train, val = tiny_semseg
    opts = native_opts(train, val, "unused") + ["DATALOADER.LOAD_DURING_BACKWARD", "True"]
    loader = Trainer.build_train_loader(get_semseg_heads_cfg(NATIVE_SEMSEG, opts))
    assert isinstance(loader, ThreadPrefetcher) and loader.on_demand and loader.depth == 1
    assert len(next(iter(loader))) == 2
    workers = get_semseg_heads_cfg(NATIVE_SEMSEG, opts + ["DATALOADER.NUM_WORKERS", "1"])
    assert not isinstance(Trainer.build_train_loader(workers), ThreadPrefetcher)
    both = get_semseg_heads_cfg(NATIVE_SEMSEG, opts + ["DATALOADER.PREFETCH_BATCHES", "2"])
    with pytest.raises(ValueError, match="LOAD_DURING_BACKWARD and DATALOADER.PREFETCH_BATCHES"):
        Trainer.build_train_loader(both)


# The child runs train_net.py's own entry point; a hook added for the test blocks right after
# the first checkpoint so that the parent can SIGKILL it at a known point.
CHILD = textwrap.dedent(
    """
    import os, sys, time
    import torch
    torch.set_num_threads(1)
    import importlib.util

    def load(name, path):  # tools/ and tests/ are folders of scripts, loaded by file path
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    register_tiny_semseg = load("tiny_data", {tiny_data!r}).register_tiny_semseg
    register_tiny_semseg({train!r}, {train_root!r}, 8, seed=0)
    register_tiny_semseg({val!r}, {val_root!r}, 4, seed=1)
    from detectron2.engine import HookBase
    from semseg_heads.engine import Trainer

    class BlockAfterFirstCheckpoint(HookBase):
        def after_step(self):
            if self.trainer.iter == {kill_after}:
                open(os.path.join(self.trainer.cfg.OUTPUT_DIR, "BLOCKED"), "w").close()
                time.sleep(600)

    build_hooks = Trainer.build_hooks
    Trainer.build_hooks = lambda self: build_hooks(self) + [BlockAfterFirstCheckpoint()]
    train_net = load("train_net", {train_net!r})
    sys.argv = ["train_net.py"] + {argv!r}
    train_net.invoke_main()
    """
)


def test_killed_run_resumes_to_max_iter(train_net, tiny_semseg, tmp_path):
    train, val = tiny_semseg
    max_iter, period = 6, 3
    out = tmp_path / "run"
    opts = native_opts(train, val, out, max_iter) + [
        "SOLVER.CHECKPOINT_PERIOD", str(period), "SOLVER.STEPS", "(4,)", "SOLVER.OPTIMIZER", "SGD",
    ]  # fmt: skip
    argv = ["--config-file", NATIVE_SEMSEG, *opts]
    roots = {r["file_name"].split(os.sep + "image")[0] for n in (train, val) for r in DatasetCatalog.get(n)}
    train_root, val_root = sorted(roots, key=lambda r: not r.endswith("train"))
    code = CHILD.format(
        tiny_data=os.path.join(os.path.dirname(__file__), "tiny_data.py"),
        train_net=os.path.join(REPO, "tools", "train_net.py"), train=train, val=val,
        train_root=train_root, val_root=val_root, kill_after=period - 1, argv=argv,
    )  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while not (out / "BLOCKED").exists():
            assert proc.poll() is None, f"training process exited early with {proc.returncode}"
            assert time.time() < deadline, "training never reached its first checkpoint"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    first = f"model_{period - 1:07d}.pth"
    assert (out / "last_checkpoint").read_text().strip() == first
    assert not (out / "model_final.pth").exists()
    state = load_checkpoint_file(str(out / first))
    assert state["trainer"]["iteration"] == period - 1
    # Detectron2 v0.6 keeps no optimizer state (our Trainer adds it under "optimizer"); later
    # releases save it themselves under "_trainer".
    trainer_state = state["trainer"]
    optimizer = trainer_state.get("optimizer") or trainer_state.get("_trainer", {}).get("optimizer")
    assert optimizer and optimizer["state"], "optimizer state (momentum) must be saved"

    train_net.main(parse("--resume", *argv))
    assert (out / "model_final.pth").is_file()
    rows = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    train_rows = [r for r in rows if "total_loss" in r]
    assert [r["iteration"] for r in train_rows] == list(range(max_iter))
    # Same learning-rate schedule as an uninterrupted run.
    expected = _learning_rates(build_lr_scheduler, get_semseg_heads_cfg(NATIVE_SEMSEG, opts), max_iter)
    assert [r["lr"] for r in train_rows] == pytest.approx(expected)


def test_model_ema_evaluated_saved_and_resumed(train_net, tiny_semseg, tmp_path, monkeypatch):
    """MODEL_EMA: evaluations (during training and eval-only of the saved file) run with the
    average, the trained weights stay the model's, and a resumed run continues the average
    instead of restarting it."""
    train, val = tiny_semseg
    out = tmp_path / "run"
    ema = ["MODEL_EMA.ENABLED", "True", "MODEL_EMA.DECAY", "0.9", "TEST.EVAL_PERIOD", "2"]
    opts = native_opts(train, val, out, max_iter=2) + ema
    evaluated = []
    test = Trainer.test.__func__

    def recording_test(cls, cfg, model, evaluators=None):
        evaluated.append({k: v.clone() for k, v in model.state_dict().items()})
        return test(cls, cfg, model, evaluators)

    monkeypatch.setattr(Trainer, "test", classmethod(recording_test))
    trainer = Trainer(get_semseg_heads_cfg(NATIVE_SEMSEG, opts))
    trainer.resume_or_load(resume=False)
    res = trainer.train()
    state = load_checkpoint_file(str(out / "model_final.pth"))
    assert state["model_ema"]["num_updates"] == 2
    for weights in evaluated:
        for k, v in state["model_ema"]["state"].items():
            assert torch.equal(weights[k], v), f"{k}: not evaluated with the average"
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, state["model"][k]), f"{k}: the trained weights were not put back"
    assert any(not torch.equal(v, state["model"][k]) for k, v in state["model_ema"]["state"].items()), (
        "the average equals the weights"
    )

    weights = ["MODEL.WEIGHTS", out / "model_final.pth"]
    again = train_net.main(parse("--config-file", NATIVE_SEMSEG, "--eval-only", *opts, *weights))
    assert again["sem_seg"]["mIoU"] == pytest.approx(res["sem_seg"]["mIoU"])
    assert len(evaluated) == 2 and all(torch.equal(evaluated[1][k], v) for k, v in evaluated[0].items())

    longer = native_opts(train, val, out, max_iter=4) + ema
    train_net.main(parse("--resume", "--config-file", NATIVE_SEMSEG, *longer))
    assert load_checkpoint_file(str(out / "model_final.pth"))["model_ema"]["num_updates"] == 4
