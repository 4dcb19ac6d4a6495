"""The overhead benchmark of one config (``tools/benchmark.py`` is its command line), built on
the measuring helpers of ``chairseg.measure.timing`` that the study uses too.

The overhead figures, measured in one process and one run:

(a) training step time through Detectron2's trainer (our ``Trainer``: data loader, model,
    optimizer, hooks) against a plain PyTorch loop with the same network, loss (the head's own
    loss module where it has one, else cross-entropy), batch, optimizer and in-memory tensors;
    and, to split that overhead, a loop that calls the model as the trainer does
    (``model(list[dict])``: Detectron2's normalisation and padding, the head's loss) on an
    in-memory batch, without the trainer's loader, hooks or metrics;
(b) inference images/s of our model (``model(list[dict])``: normalisation, padding,
    post-processing) against the same network run bare on pre-normalised tensors;
(c) the trainer's data loader alone against what the trainer consumes;
(d) this machine's 3x3-convolution throughput (a large conv, forward + backward), and the
    training step's achieved GFLOP/s as a fraction of it.

Fairness: every variant uses the same weights, batch, optimizer (built by
``Trainer.build_optimizer``) and ``torch`` thread count; warm-up iterations are excluded;
the trainer and the plain loops run interleaved in blocks inside one training run so that
load from other processes on the machine hits all of them alike, in an order that rotates
from round to round (``rotated``) so that no loop always follows the same one; medians are reported
next to means. Each round's trainer block is compared with the bare block of the same round
(``round_ratios``), so the report gives the overhead's spread over rounds beside its median, and,
for a precision run with and without ``+cl``, channels-last's gain through the trainer and in
the bare loop the same way: differences of a few percent are within this machine's noise
unless the rounds agree.
"""

from __future__ import annotations

import copy
import cProfile
import gc
import io
import itertools
import os
import pstats
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from chairseg.measure.timing import (
    bare_network,
    conv_ceiling,
    count_gmacs,
    count_parameters,
    peak_gpu_mb,
    peak_rss_mb,
    summarize,
    time_calls,
    time_interleaved,
)

# --------------------------------------------------------------------------- the benchmark


#: Precision variants by name: (SOLVER.AMP.ENABLED, SOLVER.AMP.PRECISION); "+cl" adds
#: MODEL.CHANNELS_LAST True (without it, False).
PRECISIONS = {"fp32": (False, ""), "bf16": (True, "bfloat16"), "fp16": (True, "float16")}
DEFAULT_VARIANTS = ("fp32", "bf16", "bf16+cl")


def variant_opts(variant: str) -> list[str]:
    """Config overrides of a variant name such as ``"fp32"``, ``"bf16+cl"`` or ``"fp16+cl"``."""
    precision, _, layout = variant.partition("+")
    if precision not in PRECISIONS or layout not in ("", "cl"):
        raise ValueError(
            f"benchmark variant {variant!r}: expected <precision>[+cl], precision one of {sorted(PRECISIONS)}"
        )
    enabled, name = PRECISIONS[precision]
    return [
        "SOLVER.AMP.ENABLED", str(enabled), "SOLVER.AMP.PRECISION", name,
        "MODEL.CHANNELS_LAST", str(layout == "cl"),
    ]  # fmt: skip


@dataclass
class BenchmarkSettings:
    """What ``run_benchmark`` measures and how (``tools/benchmark.py``'s options)."""

    config_file: str
    opts: list[str] = field(default_factory=list)
    variants: list[str] = field(default_factory=lambda: list(DEFAULT_VARIANTS))
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
    onnx: bool = False  # also time ONNX Runtime on the first variant's model (semseg_heads.deploy)
    # > 0: the trainer steps over this many batches taken from its loader beforehand, in turn,
    # instead of its loader: the trainer without the loader's work, to split (a)'s overhead.
    trainer_batches: int = 0


def _setup_cfg(s: BenchmarkSettings, output_dir: str, variant: str):
    from semseg_heads.config import get_semseg_heads_cfg

    cfg = get_semseg_heads_cfg(s.config_file, list(s.opts) + variant_opts(variant))
    cfg.MODEL.DEVICE = s.device
    cfg.SOLVER.IMS_PER_BATCH = s.batch
    if s.num_workers is not None:
        cfg.DATALOADER.NUM_WORKERS = s.num_workers
    # Training measurement only: no evaluation datasets, no checkpoint while timing.
    cfg.DATASETS.TEST = ()
    cfg.TEST.EVAL_PERIOD = 0
    cfg.SOLVER.MAX_ITER = 10**9
    cfg.SOLVER.CHECKPOINT_PERIOD = 10**9
    cfg.OUTPUT_DIR = os.path.join(output_dir, variant)
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
    from chairseg.data.prepare import find_or_generate_chair_segments
    from semseg_heads.data.chair_segments import builtin_root

    candidates = [s.data_root] if s.data_root else [builtin_root(), s.generate_into]
    root, _ = find_or_generate_chair_segments(
        candidates, None if s.data_root else s.generate_into, {"train": train_images}
    )
    return root


def _trainer_class(cfg, batches: int) -> type:
    """``Trainer``, or with ``batches`` > 0 a ``Trainer`` whose training loader is that many
    batches of its own loader, taken beforehand and given in turn (no loading while it steps)."""
    from semseg_heads.engine import Trainer

    if batches <= 0:
        return Trainer
    taken = list(itertools.islice(iter(Trainer.build_train_loader(cfg)), batches))

    class InMemoryLoaderTrainer(Trainer):
        @classmethod
        def build_train_loader(cls, cfg):
            return itertools.cycle(taken)

    return InMemoryLoaderTrainer


def bare_loss(
    model: torch.nn.Module, logits: torch.Tensor, labels: torch.Tensor, ignore: int
) -> torch.Tensor:
    """The bare loop's loss: the head's own loss module where it has one (border weights, Dice,
    Lovász: what the trainer's step computes, so the trainer's overhead over the bare loop is the
    trainer's alone), else cross-entropy."""
    head_loss = getattr(getattr(model, "sem_seg_head", None), "loss", None)
    if isinstance(head_loss, torch.nn.Module):
        return sum(head_loss(logits, labels).values())
    return F.cross_entropy(logits.float(), labels, ignore_index=ignore)


class _Variant:
    """One precision/layout variant: our Trainer stepped by hand (all its hooks run, as in
    ``train()``), a bare PyTorch loop on a copy of its model, and the inference pair."""

    def __init__(self, s: BenchmarkSettings, name: str, out_dir: str):
        from detectron2.utils.events import EventStorage

        from semseg_heads.amp import amp_settings
        from semseg_heads.engine import Trainer

        self.name = name
        self.cfg = cfg = _setup_cfg(s, out_dir, name)
        self.amp = amp_settings(cfg)
        torch.manual_seed(0)  # every variant starts from the same weights and sees the same batches
        self.trainer = trainer = _trainer_class(cfg, s.trainer_batches)(cfg)
        model = trainer.model
        if not hasattr(model, "sem_seg_head"):
            raise ValueError(f"{s.config_file}: not a semantic model ({type(model).__name__})")
        trainer.iter = trainer.start_iter = 0
        trainer.max_iter = cfg.SOLVER.MAX_ITER
        trainer.storage = EventStorage(0)
        with trainer.storage:
            trainer.before_train()

        plain_model = copy.deepcopy(model).train()
        plain_opt = Trainer.build_optimizer(cfg, plain_model)
        bare = bare_network(plain_model)
        ignore = cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE
        batch, images, labels = _in_memory_batch(next(iter(Trainer.build_train_loader(cfg))), model, s.device)
        amp = self.amp

        def plain_step() -> None:
            with amp.autocast():
                logits = bare(images)
            loss = bare_loss(plain_model, logits, labels, ignore)
            plain_opt.zero_grad()
            loss.backward()
            plain_opt.step()

        self.plain_step = plain_step
        model_loop = copy.deepcopy(model).train()
        model_loop_opt = Trainer.build_optimizer(cfg, model_loop)

        def model_step() -> None:
            with amp.autocast():
                losses = model_loop(batch)
            loss = sum(v.float() for v in losses.values())
            model_loop_opt.zero_grad()
            loss.backward()
            model_loop_opt.step()

        self.model_step = model_step
        self.optimizer_name = type(trainer.optimizer).__name__
        self.params = count_parameters(model)
        self.infer_batch = [{k: v for k, v in d.items() if k != "sem_seg"} for d in batch]
        self.images = images

    def training_loops(self) -> list[tuple[str, Callable[[], None]]]:
        return [("trainer", self.trainer_step), ("bare", self.plain_step), ("model", self.model_step)]

    def trainer_step(self) -> None:
        t = self.trainer
        with t.storage:
            t.before_step()
            t.run_step()
            t.after_step()
        t.iter += 1

    def finish_training(self) -> torch.nn.Module:
        """Stop the trainer (its loader workers too) and return an eval-mode copy of its model."""
        model = copy.deepcopy(self.trainer.model).eval()
        del self.trainer
        gc.collect()
        return model

    def inference_fns(self, model: torch.nn.Module) -> dict[str, Callable[[], object]]:
        from semseg_heads.amp import AutocastInference

        wrapped = AutocastInference(model, self.amp) if self.amp.enabled else model
        bare = bare_network(model)
        amp, batch, images = self.amp, self.infer_batch, self.images

        def model_step() -> None:
            with torch.no_grad():
                wrapped(batch)

        def bare_step() -> None:
            with torch.no_grad(), amp.autocast():
                bare(images)

        return {f"{self.name}/model": model_step, f"{self.name}/bare": bare_step}


def run_benchmark(s: BenchmarkSettings) -> dict:
    """The figures (a)-(d) of the module docstring for one config and each variant, as a dict."""
    from semseg_heads.engine import Trainer

    data_root = ensure_data(s)
    torch.set_num_threads(s.threads)
    device = s.device
    out_dir = tempfile.mkdtemp(prefix="semseg_bench_")
    variants = [_Variant(s, name, out_dir) for name in s.variants]

    # (a) training: each variant's trainer and bare loop in blocks, the variants in turn, so
    # background load hits them alike.
    train: dict[str, list[float]] = {}
    for v in variants:
        train[f"{v.name}/trainer"], train[f"{v.name}/bare"], train[f"{v.name}/model"] = [], [], []
        for _ in range(s.warmup):
            v.trainer_step()
            v.plain_step()
            v.model_step()
    profiler = cProfile.Profile() if s.profile else None
    if profiler:
        profiler.enable()
    rounds = max(1, s.iters // s.block)
    blocks = [(f"{v.name}/{loop}", step) for v in variants for loop, step in v.training_loops()]
    for r in range(rounds):
        for name, step in rotated(blocks, r):
            train[name] += time_calls(step, 0, s.block, device)
    if profiler:
        profiler.disable()
    # What the step waited for its batch (the trainer's data_time) over the timed steps: the
    # loader's share of the trainer's time, without the noise of comparing two loops.
    timed = rounds * s.block
    loader_wait = {
        v.name: statistics.median(x for x, _ in v.trainer.storage.history("data_time").values()[-timed:])
        for v in variants
    }
    from semseg_heads.data.cache import resolve_cache_images, resolve_num_workers, train_dataset_dicts

    # As Trainer.build_train_loader decides them (CACHE_IMAGES None: by the records' size).
    cache_images = resolve_cache_images(variants[0].cfg, train_dataset_dicts(variants[0].cfg))
    num_workers = resolve_num_workers(variants[0].cfg, cache_images)
    models = [v.finish_training() for v in variants]

    # (c) the trainer's own loader (the same for every variant), alone; its workers are shut
    # down before inference is timed.
    loader_iter = iter(Trainer.build_train_loader(variants[0].cfg))
    loader_times = time_calls(loader_iter.__next__, s.warmup, s.loader_batches)
    del loader_iter
    gc.collect()

    # (b) inference: our model on list[dict] vs the bare network on a pre-normalised tensor.
    fns: dict[str, Callable[[], object]] = {}
    for v, m in zip(variants, models):
        fns.update(v.inference_fns(m))
    if s.onnx:  # the exported fp32 graph (normalise, pad, crop inside), same batch, same threads
        from chairseg.measure.inference_paths import ort_inference_fns

        images = torch.stack([d["image"] for d in variants[0].infer_batch]).float().cpu()
        fns.update(ort_inference_fns(models[0], images, s.threads))
    infer = time_interleaved(fns, s.warmup, max(1, s.infer_iters // s.block), s.block, device)

    # (d) the conv ceiling in each variant's precision and layout, and the achieved rate.
    gmacs = count_gmacs(models[0], variants[0].infer_batch[:1])
    b = s.batch
    train_gflop = 3 * 2 * gmacs * b  # training ~ three forwards' worth of multiply-adds
    ceilings: dict[tuple, dict] = {}
    rows = {}
    for v in variants:
        key = (v.amp.dtype if v.amp.enabled else None, bool(v.cfg.MODEL.CHANNELS_LAST))
        if key not in ceilings:
            ceilings[key] = conv_ceiling(device, dtype=key[0], channels_last=key[1])
        tr, tb = summarize(train[f"{v.name}/trainer"]), summarize(train[f"{v.name}/bare"])
        im, ib = summarize(infer[f"{v.name}/model"]), summarize(infer[f"{v.name}/bare"])
        rows[v.name] = {
            "ran_as": v.amp.name + ("+channels_last" if key[1] else ""),
            "train_trainer": tr,
            "train_bare": tb,
            "trainer_overhead": tr["median_s"] / tb["median_s"] - 1,
            "trainer_overhead_rounds": round_ratios(
                train[f"{v.name}/trainer"], train[f"{v.name}/bare"], s.block
            ),
            "trainer_ips": b / tr["median_s"],
            "loader_wait_s": loader_wait[v.name],
            "train_model_loop": summarize(train[f"{v.name}/model"]),
            # Each model block ran in the same round as its bare block.
            "model_loop_overhead_rounds": round_ratios(
                train[f"{v.name}/model"], train[f"{v.name}/bare"], s.block
            ),
            "infer_model": im,
            "infer_bare": ib,
            "inference_overhead": im["median_s"] / ib["median_s"] - 1,
            "infer_ips": b / im["median_s"],
            "ceiling": ceilings[key],
            "trainer_gflops": train_gflop / tr["median_s"],
            "bare_gflops": train_gflop / tb["median_s"],
        }
    base = rows[variants[0].name]
    cl_gains = {}
    for v in variants:
        if v.name.endswith("+cl") and v.name[: -len("+cl")] in rows:
            plain = v.name[: -len("+cl")]
            cl_gains[plain] = {
                side: spread(round_ratios(train[f"{plain}/{side}"], train[f"{v.name}/{side}"], s.block))
                for side in ("trainer", "bare")
            }
    for r in rows.values():
        r["train_speedup"] = base["train_trainer"]["median_s"] / r["train_trainer"]["median_s"]
        r["infer_speedup"] = base["infer_model"]["median_s"] / r["infer_model"]["median_s"]
    onnx_rows = {n: summarize(t) for n, t in infer.items() if n.startswith("ort-")}
    lstats = summarize(loader_times)
    fastest = max(r["trainer_ips"] for r in rows.values())
    result = {
        "config": s.config_file,
        "opts": list(s.opts),
        "variants": list(s.variants),
        "data_root": data_root,
        "device": device,
        "threads": torch.get_num_threads(),
        "batch": b,
        "num_workers": num_workers,
        "cache_images": cache_images,
        "optimizer": variants[0].optimizer_name,
        "warmup": s.warmup,
        "block": s.block,
        "params": variants[0].params,
        "gmacs_per_image": gmacs,
        "rows": rows,
        "rounds": rounds,
        "channels_last_gain": cl_gains,
        "loader": lstats,
        "loader_ips": b / lstats["mean_s"],
        "fastest_trainer_ips": fastest,
        "loader_ratio": b / lstats["mean_s"] / fastest,
        "peak_rss_mb": peak_rss_mb(),
        "peak_gpu_mb": peak_gpu_mb(device),
        "load_avg_1min": os.getloadavg()[0],
        "onnx_runtime": onnx_rows,
        "trainer_batches": s.trainer_batches,
    }
    if profiler:
        buf = io.StringIO()
        pstats.Stats(profiler, stream=buf).sort_stats("cumulative").print_stats(s.profile_lines)
        result["profile"] = buf.getvalue()
    return result


def rotated(seq: list, r: int) -> list:
    """``seq`` started at its ``r``-th item (modulo its length): round ``r``'s block order. Each
    block then runs in every position in turn, so what one block leaves in the caches, or what
    the loader thread does in the next, falls on every loop alike over the rounds."""
    k = r % len(seq) if seq else 0
    return seq[k:] + seq[:k]


def round_ratios(a: list[float], b: list[float], block: int) -> list[float]:
    """``median(a's block) / median(b's block) - 1`` for each round of ``block`` calls: a paired
    comparison, as both blocks ran within the same round, a few blocks apart at most, under much
    the same background load."""
    if len(a) != len(b) or block < 1:
        raise ValueError(
            f"round_ratios: {len(a)} and {len(b)} times in blocks of {block}; expected equal counts"
        )
    return [
        statistics.median(a[i : i + block]) / statistics.median(b[i : i + block]) - 1
        for i in range(0, len(a) - block + 1, block)
    ]


def spread(values: list[float]) -> dict[str, float]:
    """Median, min and max of per-round figures (empty: {})."""
    if not values:
        return {}
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def format_spread(s: dict[str, float]) -> str:
    return f"{s['median']:+.1%} [{s['min']:+.1%}, {s['max']:+.1%}]" if s else "-"


def format_report(r: dict) -> str:
    """The dict of ``run_benchmark`` as the printed report."""
    b = r["batch"]
    gpu = f", peak GPU {r['peak_gpu_mb']:.0f} MiB" if r["peak_gpu_mb"] else ""
    first = r["variants"][0]
    lines = [
        f"config {r['config']} {' '.join(r['opts'])}",
        f"device {r['device']}, torch threads {r['threads']}, batch {b}, optimizer {r['optimizer']}, "
        f"loader workers {r['num_workers']}, image cache {r['cache_images']}, warm-up {r['warmup']} "
        f"iters excluded, blocks of {r['block']} interleaved, 1-min load average at the end "
        f"{r['load_avg_1min']:.2f}",
        f"params {r['params'] / 1e6:.2f}M, {r['gmacs_per_image']:.3f} GMACs per image (fvcore, eval forward)",
        *(
            [
                f"the trainer steps over {r['trainer_batches']} batches taken from its loader beforehand "
                "(--trainer-batches): no loading while it trains"
            ]
            if r.get("trainer_batches")
            else []
        ),
        "",
        f"(a) training step, batch {b}: our Trainer (loader, model, optimizer, all hooks) vs a bare "
        "PyTorch loop (same network, loss, precision, optimizer, in-memory tensors); medians. 'per round': "
        f"the overhead of each of the {r.get('rounds', '?')} rounds (a trainer block beside its bare "
        "block), median [min, max], the noise of this machine; 'wait ms': the median time the "
        "trainer's step waited for its batch (its data_time)",
        f"    {'variant':<10}{'ran as':<24}{'trainer ms':>11}{'img/s':>8}{'bare ms':>10}{'overhead':>10}"
        f"{'per round':>24}{'vs ' + first:>10}{'GFLOP/s':>9}{'ceiling':>9}{'of ceil.':>9}{'wait ms':>9}",
    ]
    for name, x in r["rows"].items():
        per_round = format_spread(spread(x.get("trainer_overhead_rounds", [])))
        lines.append(
            f"    {name:<10}{x['ran_as']:<24}{x['train_trainer']['median_s'] * 1000:11.1f}"
            f"{x['trainer_ips']:8.1f}{x['train_bare']['median_s'] * 1000:10.1f}{x['trainer_overhead']:+10.1%}"
            f"{per_round:>24}{x['train_speedup']:9.2f}x{x['trainer_gflops']:9.1f}{x['ceiling']['gflops']:9.1f}"
            f"{x['trainer_gflops'] / x['ceiling']['gflops']:9.0%}"
            + (f"{x['loader_wait_s'] * 1000:9.2f}" if "loader_wait_s" in x else "")
        )
    for name, x in r["rows"].items():
        if "model_loop_overhead_rounds" in x:
            lines.append(
                f"    {name}: the model called as the trainer calls it (model(list[dict]) on an in-memory "
                f"batch, no loader or hooks) {x['train_model_loop']['median_s'] * 1000:.1f} ms, per round "
                f"{format_spread(spread(x['model_loop_overhead_rounds']))} over the bare loop"
            )
    for precision, g in r.get("channels_last_gain", {}).items():
        lines.append(
            f"    channels-last gain in {precision}, per round (time without / with - 1): our trainer "
            f"{format_spread(g['trainer'])}, the bare loop {format_spread(g['bare'])}"
        )
    lines += [
        "",
        f"(b) inference, batch {b}: model(list[dict]) (normalise, pad, post-process) vs the bare "
        "network on tensors, same precision; medians",
        f"    {'variant':<10}{'model ms':>10}{'img/s':>8}{'bare ms':>10}{'overhead':>10}{'vs ' + first:>10}",
    ]
    for name, x in r["rows"].items():
        lines.append(
            f"    {name:<10}{x['infer_model']['median_s'] * 1000:10.1f}{x['infer_ips']:8.1f}"
            f"{x['infer_bare']['median_s'] * 1000:10.1f}{x['inference_overhead']:+10.1%}"
            f"{x['infer_speedup']:9.2f}x"
        )
    for name, x in r.get("onnx_runtime", {}).items():
        first_ms = r["rows"][first]["infer_model"]["median_s"]
        lines.append(
            f"    {name.split('/')[0]:<10}{x['median_s'] * 1000:10.1f}{b / x['median_s']:8.1f}"
            f"{'':>10}{'':>10}{first_ms / x['median_s']:9.2f}x"
        )
    lo = r["loader"]
    lines += [
        "",
        f"(c) data loader alone: {lo['mean_s'] * 1000:.1f} ms/batch = {r['loader_ips']:.0f} images/s; the "
        f"fastest trainer consumes {r['fastest_trainer_ips']:.1f} images/s; ratio {r['loader_ratio']:.1f}x",
        "",
        "(d) conv ceiling per precision/layout: best of 3 large 3x3 convs, forward+backward; "
        "'of ceil.' above = the trainer's GFLOP/s (3 x forward GMACs) / the ceiling of its own precision",
        f"peak RSS {r['peak_rss_mb']:.0f} MiB{gpu}",
    ]
    return "\n".join(lines)
