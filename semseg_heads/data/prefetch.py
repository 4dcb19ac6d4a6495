"""The in-process training loader run in a background thread (``DATALOADER.PREFETCH_BATCHES``,
``DATALOADER.LOAD_DURING_BACKWARD``).

When Detectron2's loader runs in the training process (``DATALOADER.NUM_WORKERS`` 0, what
``resolve_num_workers`` picks with the image cache or on a 2-CPU machine), every batch is read,
mapped and collated between two steps, on the step's own time. ``ThreadPrefetcher`` iterates
the same loader in a background thread so that work overlaps the step. The batches, their order
and their random augmentations are the loader's own: only the producing thread draws from the
loader and its random generators.

Two ways to overlap:

- ``depth`` batches ahead, always running (``PREFETCH_BATCHES``). The mapper's Python work then
  holds the GIL that the forward pass's many small operator calls need: on the 2-core reference
  CPU it slowed steps that read from the image cache and sped up only those that decode PNGs
  (docs/measurements.md, "A loader thread").
- On demand (``LOAD_DURING_BACKWARD``): the thread loads one batch each time the consumer asks
  (``load_next()``), and the training step asks as its backward pass starts. PyTorch's autograd
  engine runs the backward pass without the GIL, so the loader's Python work takes the GIL
  only while the step does not need it; a ``next()`` that was not asked for first asks itself.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["ThreadPrefetcher", "request_next_batch"]

_ITEM, _END, _ERROR = "item", "end", "error"
_POLL_S = 0.1  # how often a waiting producer checks that its consumer still exists


class ThreadPrefetcher:
    """Iterates ``loader`` in a daemon thread, at most ``depth`` batches ahead; with
    ``on_demand``, one batch per ``load_next()`` of the iterator (or per ``next()`` that finds
    none asked for).

    Each ``iter()`` starts its own thread at its first ``next()`` or ``load_next()`` (so an
    iterator made and never used, as Detectron2 v0.6's trainer makes one at construction, costs
    nothing); the thread stops when the iterator is closed or collected. An exception raised by
    the loader is raised again in the consumer.
    """

    def __init__(self, loader: Iterable, depth: int = 2, on_demand: bool = False):
        if depth < 1:
            raise ValueError(f"DATALOADER.PREFETCH_BATCHES must be >= 1 to prefetch, got {depth}")
        self.loader = loader
        self.depth = depth
        self.on_demand = on_demand

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:
        # The wrapped loader's attributes (dataset, batch_size, ...) as Detectron2's code reads them.
        if name in ("loader", "depth", "on_demand"):
            raise AttributeError(name)
        return getattr(self.loader, name)

    def __iter__(self) -> Iterator:
        return _PrefetchIterator(self.loader, self.depth, self.on_demand)


class _Channel:
    """What the producing thread and its iterator share. The thread holds this and not the
    iterator, so that a dropped iterator is collected and its ``__del__`` stops the thread."""

    def __init__(self, depth: int):
        self.slots: queue.Queue = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.asked = threading.Semaphore(0)  # batches asked for (on demand)

    def put(self, kind: str, value: Any) -> bool:
        while not self.stop.is_set():
            try:
                self.slots.put((kind, value), timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def wait_until_asked(self) -> bool:
        while not self.stop.is_set():
            if self.asked.acquire(timeout=_POLL_S):
                return True
        return False


def _produce(loader: Iterable, channel: _Channel, on_demand: bool) -> None:
    try:
        batches = iter(loader)
        while not on_demand or channel.wait_until_asked():
            try:
                batch = next(batches)
            except StopIteration:
                channel.put(_END, None)
                return
            if not channel.put(_ITEM, batch):
                return
    except BaseException as e:  # handed to the consumer, which raises it
        channel.put(_ERROR, e)


class _PrefetchIterator:
    def __init__(self, loader: Iterable, depth: int, on_demand: bool):
        self._loader = loader
        self._depth = depth
        self._on_demand = on_demand
        self._channel = _Channel(depth)
        self._pending = 0  # asked for and not yet taken by next() (on demand)
        self._thread: threading.Thread | None = None
        self._done = False

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=_produce,
                args=(self._loader, self._channel, self._on_demand),
                name="semseg_heads-prefetch",
                daemon=True,
            )
            self._thread.start()

    def load_next(self) -> None:
        """Start loading the next batch now (on demand; a no-op when ``depth`` batches are
        already asked for, or when the thread runs ahead by itself)."""
        if self._done:
            return
        if self._on_demand and self._pending < self._depth:
            self._pending += 1
            self._channel.asked.release()
        self._start()

    def __iter__(self) -> Iterator:
        return self

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        if self._on_demand and self._pending == 0:
            self.load_next()
        self._start()
        kind, value = self._channel.slots.get()
        if self._on_demand:
            self._pending -= 1
        if kind == _ITEM:
            return value
        self.close()
        if kind == _ERROR:
            raise value
        raise StopIteration

    def close(self) -> None:
        """Stop the producing thread (it finishes the batch it is loading, if any)."""
        self._done = True
        self._channel.stop.set()

    def __del__(self) -> None:
        self._channel.stop.set()


def request_next_batch(loader_iter: Any) -> None:
    """Ask ``loader_iter`` to start loading its next batch if it loads on demand (a
    ``ThreadPrefetcher`` iterator); anything else is left alone."""
    load_next = getattr(loader_iter, "load_next", None)
    if load_next is not None:
        load_next()
