"""Measuring helpers: wall-clock timing (plain and interleaved), the machine's convolution
ceiling, GMACs and parameters (fvcore), peak memory, and the bare network inside a model.

Shared by the overhead benchmark (``chairseg.measure.benchmark``), the inference paths
(``chairseg.measure.inference_paths``), the study's worker and ``tried_speedups.py``.
"""

from __future__ import annotations

import inspect
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode


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


class _StaticUnpoolSizes(TorchFunctionMode):
    """``F.max_unpool2d`` given its default output size as Python ints.

    Under torch.jit tracing (what fvcore runs), sizes are traced tensors, which the
    non-negativity check inside ``F.max_unpool2d`` cannot take; the explicit size (the same
    one, from the traced shapes) passes it. DeconvNet's unpooling needs this; a mode is
    PyTorch's public way to intercept a function call, so nothing of torch is replaced.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.max_unpool2d:
            bound = inspect.signature(F.max_unpool2d).bind(*args, **kwargs)
            bound.apply_defaults()
            if bound.arguments["output_size"] is None:
                a = bound.arguments
                kernel, stride, padding = (
                    _pair(a["kernel_size"]),
                    _pair(a["stride"] or a["kernel_size"]),
                    _pair(a["padding"]),
                )
                size = [int(n) for n in a["input"].shape[-2:]]
                a["output_size"] = [(size[d] - 1) * stride[d] + kernel[d] - 2 * padding[d] for d in range(2)]
                return func(*bound.args, **bound.kwargs)
        return func(*args, **kwargs)


def _pair(x: int | Sequence[int]) -> tuple[int, int]:
    return (x, x) if isinstance(x, int) else (int(x[0]), int(x[1]))


def count_gmacs(model: torch.nn.Module, inputs: list[dict]) -> float:
    """Multiply-adds (in G) of one eval-mode forward per image, averaged over ``inputs``.

    fvcore's counter counts one fused multiply-add as one flop, so its total is the MAC count.
    (Detectron2 v0.6's own adapter, ``detectron2.utils.analysis``, imports ``detectron2.export``,
    which needs caffe2; a small tensor-in wrapper does the same job here.)
    """
    from fvcore.nn import FlopCountAnalysis

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), _StaticUnpoolSizes():
            total = 0.0
            for item in inputs:
                analysis = FlopCountAnalysis(_SingleImage(model, item), (item["image"],))
                analysis.unsupported_ops_warnings(False)
                analysis.uncalled_modules_warnings(False)
                analysis.tracer_warnings("none")
                total += analysis.total()
    finally:
        model.train(was_training)
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


def conv_ceiling(
    device: str = "cpu",
    warmup: int = 2,
    iters: int = 5,
    dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> dict[str, float]:
    """This machine's 3x3 convolution throughput (forward + backward, GFLOP/s, 2 flops per MAC).

    Large, well-shaped convs are about the best the BLAS/oneDNN kernels reach here; the best
    of three shapes (the channel/size pairs a U-Net meets) is the ceiling a training step's
    achieved GFLOP/s is compared with. ``dtype`` (e.g. ``torch.bfloat16``) runs the convs under
    that autocast and ``channels_last`` in NHWC, so a mixed-precision step is compared with
    the ceiling of its own precision and layout.
    """
    best: dict[str, float] = {}
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for batch, channels, size in ((16, 128, 64), (16, 256, 32), (16, 512, 16)):
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(batch, channels, size, size, generator=gen).to(device, memory_format=fmt)
        x.requires_grad_(True)
        w = (torch.randn(channels, channels, 3, 3, generator=gen) * 0.01).to(device, memory_format=fmt)
        w.requires_grad_(True)
        grad = torch.ones(batch, channels, size, size, device=device).to(memory_format=fmt)

        def step(x: torch.Tensor = x, w: torch.Tensor = w, grad: torch.Tensor = grad) -> None:
            with torch.autocast(torch.device(device).type, dtype=dtype, enabled=dtype is not None):
                y = F.conv2d(x, w, padding=1)
            y.backward(grad.to(y.dtype))
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
