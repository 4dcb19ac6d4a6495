"""``DATALOADER.PREFETCH_BATCHES``: the in-process training loader run ahead in a thread.

When Detectron2's loader runs in the training process (``DATALOADER.NUM_WORKERS`` 0, what
``resolve_num_workers`` picks with the image cache or on a 2-CPU machine), every batch is read,
mapped and collated between two steps, on the step's own time. ``ThreadPrefetcher`` iterates
the same loader in a background thread, a few batches ahead, so that work overlaps the step
where a core is free (the step's convolutions release the GIL). The batches, their order and
their random augmentations are the loader's own: only the producing thread draws from the
loader and its random generators. Off by default: the mapper's Python work holds the GIL the
step's dispatch needs, so on the 2-core reference CPU it slowed steps that read from the image
cache and sped up only those that decode PNGs (docs/measurements.md, "A loader thread").
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["ThreadPrefetcher"]

_ITEM, _END, _ERROR = "item", "end", "error"


class ThreadPrefetcher:
    """Iterates ``loader`` in a daemon thread, at most ``depth`` batches ahead.

    Each ``iter()`` starts its own thread at its first ``next()`` (so an iterator made and never
    used, as Detectron2 v0.6's trainer makes one at construction, costs nothing); the thread stops
    when the iterator is closed or collected. An exception raised by the loader is raised again
    in the consumer.
    """

    def __init__(self, loader: Iterable, depth: int = 2):
        if depth < 1:
            raise ValueError(f"DATALOADER.PREFETCH_BATCHES must be >= 1 to prefetch, got {depth}")
        self.loader = loader
        self.depth = depth

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:
        # The wrapped loader's attributes (dataset, batch_size, ...) as Detectron2's code reads them.
        if name in ("loader", "depth"):
            raise AttributeError(name)
        return getattr(self.loader, name)

    def __iter__(self) -> Iterator:
        slots: queue.Queue = queue.Queue(maxsize=self.depth)
        stop = threading.Event()

        def put(kind: str, value: Any) -> bool:
            while not stop.is_set():
                try:
                    slots.put((kind, value), timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            try:
                for batch in self.loader:
                    if not put(_ITEM, batch):
                        return
                put(_END, None)
            except BaseException as e:  # handed to the consumer, which raises it
                put(_ERROR, e)

        thread = threading.Thread(target=produce, name="semseg_heads-prefetch", daemon=True)
        thread.start()
        try:
            while True:
                kind, value = slots.get()
                if kind == _END:
                    return
                if kind == _ERROR:
                    raise value
                yield value
        finally:
            stop.set()
