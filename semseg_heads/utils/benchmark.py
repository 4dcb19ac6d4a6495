"""The measurement library: timing, interleaved timing, the conv ceiling, GMACs, memory, and
the overhead benchmark of one config (``tools/benchmark.py`` is its command line; the Chair
Segments study in ``projects/ChairSegments`` uses the same helpers).

The overhead figures, measured in one process and one run:

(a) training step time through Detectron2's trainer (our ``Trainer``: data loader, model,
    optimizer, hooks) against a plain PyTorch loop with the same network, batch, optimizer
    and in-memory tensors;
(b) inference images/s of our model (``model(list[dict])``: normalisation, padding,
    post-processing) against the same network run bare on pre-normalised tensors;
(c) the trainer's data loader alone against what the trainer consumes;
(d) this machine's 3x3-convolution throughput (a large conv, forward + backward), and the
    training step's achieved GFLOP/s as a fraction of it.

Fairness: every variant uses the same weights, batch, optimizer (built by
``Trainer.build_optimizer``) and ``torch`` thread count; warm-up iterations are excluded;
the trainer and the plain loops run interleaved in blocks inside one training run so that
load from other processes on the machine hits all of them alike; medians are reported
next to means.
"""

from __future__ import annotations

import copy
import cProfile
import gc
import io
import os
import pstats
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

# --------------------------------------------------------------------------- measuring helpers


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def peak_gpu_mb(device: str | torch.device) -> float | None:
    """Peak CUDA memory allocated by torch on ``device`` in MiB, or None off the GPU."""
    if torch.device(device).type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / (1024.0 * 1024.0)


def count_parameters(model: torch.nn.Module) -> int:
    """All parameters of ``model`` (fvcore's ``parameter_count``; shared tensors counted once)."""
    from fvcore.nn import parameter_count

    return int(parameter_count(model)[""])


class _SingleImage(torch.nn.Module):
    """``model([{"image": x, ...}])`` as a tensor-in, tensors-out module that fvcore can trace."""

    def __init__(self, model: torch.nn.Module, item: dict):
        super().__init__()
        self.model = model
        self.item = {k: v for k, v in item.items() if k != "image"}

    def forward(self, image: torch.Tensor):
        out = self.model([{**self.item, "image": image}])[0]
        if "sem_seg" in out:
            return out["sem_seg"]
        inst = out["instances"]
        return tuple(v.tensor if hasattr(v, "tensor") else v for v in inst.get_fields().values())


def count_gmacs(model: torch.nn.Module, inputs: list[dict]) -> float:
    """Multiply-adds (in G) of one eval-mode forward per image, averaged over ``inputs``.

    fvcore's counter counts one fused multiply-add as one flop, so its total is the MAC count.
    (Detectron2 v0.6's own adapter, ``detectron2.utils.analysis``, imports ``detectron2.export``,
    which needs caffe2; a small tensor-in wrapper does the same job here.)
    """
    from fvcore.nn import FlopCountAnalysis

    was_training = model.training
    model.eval()
    # Under torch.jit tracing (what fvcore runs), F.max_unpool2d's size check compares traced
    # tensors and raises; the check guards user-given sizes only, so it is skipped while
    # counting (DeconvNet's unpooling needs this).
    check = getattr(F, "_check_unpool_output_size", None)
    if check is not None:
        F._check_unpool_output_size = lambda output_size, dim: None
    try:
        with torch.no_grad():
            total = 0.0
            for item in inputs:
                analysis = FlopCountAnalysis(_SingleImage(model, item), (item["image"],))
                analysis.unsupported_ops_warnings(False)
                analysis.uncalled_modules_warnings(False)
                analysis.tracer_warnings("none")
                total += analysis.total()
    finally:
        model.train(was_training)
        if check is not None:
            F._check_unpool_output_size = check
    return total / len(inputs) / 1e9


def sync(device: str | torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def summarize(times: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(times),
        "mean_s": statistics.fmean(times),
        "median_s": statistics.median(times),
        "min_s": min(times),
    }


def time_calls(fn: Callable[[], object], warmup: int, iters: int, device: str = "cpu") -> list[float]:
    """Per-call wall times of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def time_interleaved(
    fns: dict[str, Callable[[], object]], warmup: int, rounds: int, per_round: int, device: str = "cpu"
) -> dict[str, list[float]]:
    """Time several variants in alternating blocks so background load hits them alike."""
    for fn in fns.values():
        time_calls(fn, warmup, 0, device)
    out: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            out[name] += time_calls(fn, 0, per_round, device)
    return out


def conv_ceiling(device: str = "cpu", warmup: int = 2, iters: int = 5) -> dict[str, float]:
    """This machine's 3x3 convolution throughput (forward + backward, GFLOP/s, 2 flops per MAC).

    Large, well-shaped convs are about the best the BLAS/oneDNN kernels reach here; the best
    of three shapes (the channel/size pairs a U-Net meets) is the ceiling a training step's
    achieved GFLOP/s is compared with.
    """
    best: dict[str, float] = {}
    for batch, channels, size in ((16, 128, 64), (16, 256, 32), (16, 512, 16)):
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(batch, channels, size, size, generator=gen).to(device).requires_grad_(True)
        w = (torch.randn(channels, channels, 3, 3, generator=gen) * 0.01).to(device).requires_grad_(True)
        grad = torch.ones(batch, channels, size, size, device=device)

        def step(x: torch.Tensor = x, w: torch.Tensor = w, grad: torch.Tensor = grad) -> None:
            F.conv2d(x, w, padding=1).backward(grad)
            x.grad = None
            w.grad = None

        med = statistics.median(time_calls(step, warmup, iters, device))
        # forward + grad wrt input + grad wrt weight: three convs' worth of multiply-adds.
        gflops = 2 * 3 * batch * channels * channels * 9 * size * size / med / 1e9
        if gflops > best.get("gflops", 0.0):
            best = {
                "shape": f"N={batch} C={channels}->{channels} {size}x{size} 3x3",
                "median_s": med,
                "gflops": gflops,
            }
    return best


# --------------------------------------------------------------------------- the bare network


def bare_network(model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The network inside a ``SemanticSegmentor``-style model: pre-normalised ``[N,3,H,W]``
    -> logits, i.e. ``sem_seg_head.layers(backbone(x))`` without normalisation, padding, loss
    or post-processing. Sizes that need padding are the caller's job (64x64 needs none for
    the U-Net)."""
    backbone = getattr(model, "backbone", None)
    head = getattr(model, "sem_seg_head", None)
    if backbone is None or not callable(getattr(head, "layers", None)):
        raise TypeError(
            f"{type(model).__name__} has no backbone + sem_seg_head.layers(features); the "
            "bare-network comparison applies to semseg_heads' semantic meta-architectures"
        )

    def forward(images: torch.Tensor) -> torch.Tensor:
        return head.layers(backbone(images))

    return forward


# --------------------------------------------------------------------------- the benchmark


@dataclass
class BenchmarkSettings:
    """What ``run_benchmark`` measures and how (``tools/benchmark.py``'s options)."""

    config_file: str
    opts: list[str] = field(default_factory=list)
    batch: int = 16
    iters: int = 20  # timed training iterations per variant
    infer_iters: int = 20  # timed inference batches per variant
    loader_batches: int = 50  # timed batches of the loader alone
    warmup: int = 3  # untimed iterations before each measurement
    block: int = 5  # iterations per block when interleaving variants
    threads: int = field(default_factory=torch.get_num_threads)
    num_workers: int | None = None  # DATALOADER.NUM_WORKERS override
    device: str = "cpu"
    data_root: str | None = None  # holds Chair064/; None: the builtin root or generated data
    generate_into: str = "output/benchmark_data/ChairSegments"
    profile: bool = False
    profile_lines: int = 40


def _setup_cfg(s: BenchmarkSettings, output_dir: str):
    from semseg_heads.config import get_semseg_heads_cfg

    cfg = get_semseg_heads_cfg(s.config_file, s.opts)
    cfg.MODEL.DEVICE = s.device
    cfg.SOLVER.IMS_PER_BATCH = s.batch
    if s.num_workers is not None:
        cfg.DATALOADER.NUM_WORKERS = s.num_workers
    # Training measurement only: no evaluation datasets, no checkpoint before the end.
    cfg.DATASETS.TEST = ()
    cfg.TEST.EVAL_PERIOD = 0
    n_blocks = max(1, s.iters // s.block)
    cfg.SOLVER.MAX_ITER = s.warmup + n_blocks * s.block + 1
    cfg.SOLVER.CHECKPOINT_PERIOD = 10**9
    cfg.OUTPUT_DIR = output_dir
    cfg.freeze()
    return cfg


def _in_memory_batch(loader_batch: list[dict], model: torch.nn.Module, device: str):
    """One batch as the trainer saw it, plus its pre-normalised tensor and label forms."""
    batch = [
        {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in d.items() if k != "instances"}
        for d in loader_batch
    ]
    images = torch.stack([d["image"] for d in batch]).float()
    images = (images - model.pixel_mean) / model.pixel_std
    labels = torch.stack([d["sem_seg"] for d in batch]).long()
    return batch, images, labels


def ensure_data(s: BenchmarkSettings, train_images: int = 256) -> str:
    """Register Chair064 train from ``s.data_root``, the builtin folder, or generated data."""
    from semseg_heads.data.chair_segments import builtin_root, find_or_generate_chair_segments

    candidates = [s.data_root] if s.data_root else [builtin_root(), s.generate_into]
    root, _ = find_or_generate_chair_segments(
        candidates, None if s.data_root else s.generate_into, {"train": train_images}
    )
    return root


def run_benchmark(s: BenchmarkSettings) -> dict:
    """The overhead figures (a)-(d) of the module docstring for one config, as a dict."""
    from detectron2.engine import HookBase

    from semseg_heads.engine import Trainer

    data_root = ensure_data(s)

    torch.set_num_threads(s.threads)
    torch.manual_seed(0)
    device = s.device
    out_dir = tempfile.mkdtemp(prefix="semseg_bench_")
    cfg = _setup_cfg(s, out_dir)
    trainer = Trainer(cfg)
    model = trainer.model
    if not hasattr(model, "sem_seg_head"):
        raise ValueError(f"{s.config_file}: not a semantic model ({type(model).__name__})")

    # The plain loops train their own copies from the same initial weights with the same
    # optimizer recipe, so neither perturbs the other's state.
    plain_model = copy.deepcopy(model).train()
    plain_opt = Trainer.build_optimizer(cfg, plain_model)
    wrapped_model = copy.deepcopy(model).train()
    wrapped_opt = Trainer.build_optimizer(cfg, wrapped_model)
    bare = bare_network(plain_model)
    ignore = cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE

    batch, images, labels = _in_memory_batch(next(iter(Trainer.build_train_loader(cfg))), model, device)

    def plain_step() -> None:
        loss = F.cross_entropy(bare(images), labels, ignore_index=ignore)
        plain_opt.zero_grad()
        loss.backward()
        plain_opt.step()

    def wrapped_step() -> None:
        losses = sum(wrapped_model(batch).values())
        wrapped_opt.zero_grad()
        losses.backward()
        wrapped_opt.step()

    others = {"plain_bare": plain_step, "plain_model": wrapped_step}
    times: dict[str, list[float]] = {"trainer": [], **{k: [] for k in others}}

    class Interleave(HookBase):
        """Times each trainer iteration (all hooks included: this hook runs last) and runs
        blocks of the plain loops between trainer blocks, outside the timed intervals."""

        def before_train(self) -> None:
            self.last = time.perf_counter()

        def after_step(self) -> None:
            sync(device)
            now = time.perf_counter()
            it = self.trainer.iter
            final = it + 1 >= self.trainer.max_iter  # the final checkpoint save: not a step
            if it >= s.warmup and not final:
                times["trainer"].append(now - self.last)
            if it + 1 == s.warmup:
                for fn in others.values():
                    time_calls(fn, s.warmup, 0, device)
            if it + 1 >= s.warmup and (it + 1 - s.warmup) % s.block == 0 and not final:
                for name, fn in others.items():
                    times[name] += time_calls(fn, 0, s.block, device)
            self.last = time.perf_counter()

    trainer.register_hooks([Interleave()])
    profiler = cProfile.Profile() if s.profile else None
    if profiler:
        profiler.enable()
    trainer.resume_or_load(resume=False)
    trainer.train()
    if profiler:
        profiler.disable()

    # The trainer's loader workers would keep prefetching beside the measurements below.
    optimizer_name = type(trainer.optimizer).__name__
    del trainer
    gc.collect()

    # (c) the trainer's own loader, alone; its workers are shut down before (b) is timed.
    loader_iter = iter(Trainer.build_train_loader(cfg))
    loader_times = time_calls(loader_iter.__next__, s.warmup, s.loader_batches)
    del loader_iter
    gc.collect()

    # (b) inference: our model on list[dict] vs the bare network on a pre-normalised tensor.
    infer_model = copy.deepcopy(model).eval()
    infer_bare = bare_network(infer_model)
    infer_batch = [{k: v for k, v in d.items() if k not in ("sem_seg",)} for d in batch]

    def infer_model_step() -> None:
        with torch.no_grad():
            infer_model(infer_batch)

    def infer_bare_step() -> None:
        with torch.no_grad():
            infer_bare(images)

    infer_times = time_interleaved(
        {"model": infer_model_step, "bare": infer_bare_step},
        s.warmup,
        max(1, s.infer_iters // s.block),
        s.block,
        device,
    )

    # (d) the ceiling and the achieved rate.
    gmacs = count_gmacs(infer_model, infer_batch[:1])
    ceiling = conv_ceiling(device)

    stats = {k: summarize(v) for k, v in times.items()}
    istats = {k: summarize(v) for k, v in infer_times.items()}
    lstats = summarize(loader_times)
    b = s.batch
    # Training costs about three forwards (forward, grad wrt activations, grad wrt weights).
    train_gflop = 3 * 2 * gmacs * b
    result = {
        "config": s.config_file,
        "opts": s.opts,
        "data_root": data_root,
        "device": device,
        "threads": torch.get_num_threads(),
        "batch": b,
        "num_workers": cfg.DATALOADER.NUM_WORKERS,
        "optimizer": optimizer_name,
        "warmup": s.warmup,
        "block": s.block,
        "params": count_parameters(model),
        "gmacs_per_image": gmacs,
        "train": stats,
        "trainer_overhead": stats["trainer"]["median_s"] / stats["plain_bare"]["median_s"] - 1,
        "trainer_overhead_mean": stats["trainer"]["mean_s"] / stats["plain_bare"]["mean_s"] - 1,
        "model_wrapper_train_overhead": stats["plain_model"]["median_s"] / stats["plain_bare"]["median_s"]
        - 1,
        "infer": istats,
        "inference_overhead": istats["model"]["median_s"] / istats["bare"]["median_s"] - 1,
        "inference_overhead_mean": istats["model"]["mean_s"] / istats["bare"]["mean_s"] - 1,
        "loader": lstats,
        "loader_ips": b / lstats["mean_s"],
        "trainer_ips": b / stats["trainer"]["mean_s"],
        "ceiling": ceiling,
        "trainer_gflops": train_gflop / stats["trainer"]["median_s"],
        "plain_gflops": train_gflop / stats["plain_bare"]["median_s"],
        "peak_rss_mb": peak_rss_mb(),
        "peak_gpu_mb": peak_gpu_mb(device),
        "load_avg_1min": os.getloadavg()[0],
    }
    result["loader_ratio"] = result["loader_ips"] / result["trainer_ips"]
    if profiler:
        buf = io.StringIO()
        pstats.Stats(profiler, stream=buf).sort_stats("cumulative").print_stats(s.profile_lines)
        result["profile"] = buf.getvalue()
    return result


def _row(label: str, s: dict, extra: str = "") -> str:
    return f"    {label:<28}{s['median_s'] * 1000:9.1f} {s['mean_s'] * 1000:9.1f} {s['n']:4d}{extra}"


def _verdict(value: float, target: str, good: bool) -> str:
    return f"target {target}: {'ok' if good else 'MISSES target'}"


def format_report(r: dict) -> str:
    t, i, lo, b = r["train"], r["infer"], r["loader"], r["batch"]
    to, io_ = r["trainer_overhead"], r["inference_overhead"]
    ceil = r["ceiling"]["gflops"]
    gpu = f", peak GPU {r['peak_gpu_mb']:.0f} MiB" if r["peak_gpu_mb"] else ""
    lines = [
        f"config {r['config']} {' '.join(r['opts'])}",
        f"device {r['device']}, torch threads {r['threads']}, batch {b}, optimizer {r['optimizer']}, "
        f"loader workers {r['num_workers']}, warm-up {r['warmup']} iters excluded, blocks of "
        f"{r['block']}, 1-min load average at the end {r['load_avg_1min']:.2f}",
        f"params {r['params'] / 1e6:.2f}M, {r['gmacs_per_image']:.3f} GMACs per image (fvcore, eval forward)",
        "",
        "(a) training step                 median ms   mean ms    n",
        _row("trainer (d2 Trainer)", t["trainer"]),
        _row("plain loop, bare net", t["plain_bare"]),
        _row("plain loop, model(dicts)", t["plain_model"]),
        f"    ratio trainer / plain = {1 + to:.3f} (overhead {to:+.1%} median, "
        f"{r['trainer_overhead_mean']:+.1%} mean; {_verdict(to, '<= +5%', to <= 0.05)})",
        f"    of which the model wrapper (normalise, pad, loss): {r['model_wrapper_train_overhead']:+.1%}",
        "",
        f"(b) inference, batch of {b}             median ms   mean ms    n",
        _row("model(list[dict])", i["model"], f"   {b / i['model']['median_s']:.1f} images/s"),
        _row("bare net on tensors", i["bare"], f"   {b / i['bare']['median_s']:.1f} images/s"),
        f"    ratio model / bare = {1 + io_:.3f} (overhead {io_:+.1%} median, "
        f"{r['inference_overhead_mean']:+.1%} mean; {_verdict(io_, '<= +5%', io_ <= 0.05)})",
        "",
        f"(c) data loader alone: {lo['mean_s'] * 1000:.1f} ms/batch = {r['loader_ips']:.0f} images/s; "
        f"the trainer consumes {r['trainer_ips']:.1f} images/s; ratio {r['loader_ratio']:.1f}x "
        f"({_verdict(r['loader_ratio'], '>= 3x', r['loader_ratio'] >= 3)})",
        "",
        f"(d) conv ceiling (best of 3 shapes: {r['ceiling']['shape']}, fwd+bwd): {ceil:.1f} GFLOP/s; "
        f"the training step achieves {r['trainer_gflops']:.1f} GFLOP/s through the trainer "
        f"({r['trainer_gflops'] / ceil:.0%} of the ceiling), {r['plain_gflops']:.1f} in the plain loop "
        f"({r['plain_gflops'] / ceil:.0%})",
        "",
        f"peak RSS {r['peak_rss_mb']:.0f} MiB{gpu}",
    ]
    return "\n".join(lines)
