"""ThreadPrefetcher (DATALOADER.PREFETCH_BATCHES): the loader's batches in its order, its errors
raised in the consumer, the thread started lazily and stopped with the iterator."""

import threading
import time

import pytest

from semseg_heads.data.prefetch import ThreadPrefetcher


def prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "semseg_heads-prefetch"]


def wait_for_no_thread(timeout=5.0):
    deadline = time.time() + timeout
    while prefetch_threads() and time.time() < deadline:
        time.sleep(0.05)
    return not prefetch_threads()


def test_same_batches_in_the_same_order():
    loader = [{"i": i} for i in range(10)]
    assert list(ThreadPrefetcher(loader, depth=3)) == loader
    assert list(ThreadPrefetcher(loader, depth=1)) == loader  # and again: each iter() its own thread
    assert len(ThreadPrefetcher(loader)) == 10
    assert wait_for_no_thread()


def test_loader_error_is_raised_in_the_consumer():
    def failing():
        yield 1
        raise OSError("cannot read image 'x.png'")

    it = iter(ThreadPrefetcher(failing()))
    assert next(it) == 1
    with pytest.raises(OSError, match="x.png"):
        next(it)


def test_thread_starts_at_first_next_and_stops_when_closed():
    def endless():
        i = 0
        while True:
            yield i
            i += 1

    assert wait_for_no_thread()
    it = iter(ThreadPrefetcher(endless(), depth=2))
    assert not prefetch_threads()  # made, not used: nothing runs
    assert [next(it) for _ in range(5)] == [0, 1, 2, 3, 4]
    assert len(prefetch_threads()) == 1
    it.close()
    assert wait_for_no_thread(), "the producing thread kept running after the iterator closed"


def test_depth_below_one_names_the_key():
    with pytest.raises(ValueError, match="DATALOADER.PREFETCH_BATCHES"):
        ThreadPrefetcher([], depth=0)


def test_wrapped_loader_attributes_stay_readable():
    class Loader(list):
        batch_size = 4

    assert ThreadPrefetcher(Loader([1])).batch_size == 4
