"""ThreadPrefetcher (DATALOADER.PREFETCH_BATCHES): the loader's batches in its order, its errors
raised in the consumer, the thread started lazily and stopped with the iterator."""

import threading
import time

import pytest

from semseg_heads.data.prefetch import ThreadPrefetcher, request_next_batch


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


class CountingLoader:
    """An endless loader that counts the batches drawn from it."""

    def __init__(self):
        self.drawn = 0

    def __iter__(self):
        while True:
            self.drawn += 1
            yield self.drawn - 1


def wait_for(condition, timeout=5.0):
    deadline = time.time() + timeout
    while not condition() and time.time() < deadline:
        time.sleep(0.01)
    return condition()


def test_on_demand_loads_only_what_is_asked_for():
    loader = CountingLoader()
    it = iter(ThreadPrefetcher(loader, depth=1, on_demand=True))
    assert not prefetch_threads() and loader.drawn == 0
    assert next(it) == 0  # not asked for: next() asks itself
    time.sleep(0.3)
    assert loader.drawn == 1, "the thread ran ahead without being asked"
    it.load_next()
    assert wait_for(lambda: loader.drawn == 2)
    it.load_next()  # already one asked for: depth 1 caps it
    time.sleep(0.3)
    assert loader.drawn == 2
    assert next(it) == 1 and next(it) == 2 and loader.drawn == 3
    it.close()
    assert wait_for_no_thread()
    with pytest.raises(StopIteration):
        next(it)


def test_on_demand_gives_the_loader_batches_in_order_and_its_errors():
    loader = [{"i": i} for i in range(6)]
    it = iter(ThreadPrefetcher(loader, depth=1, on_demand=True))
    got = [next(it)]
    for _ in range(5):
        it.load_next()
        got.append(next(it))
    assert got == loader
    it.load_next()
    with pytest.raises(StopIteration):
        next(it)

    def failing():
        yield 1
        raise OSError("cannot read image 'y.png'")

    it = iter(ThreadPrefetcher(failing(), on_demand=True))
    assert next(it) == 1
    it.load_next()
    with pytest.raises(OSError, match="y.png"):
        next(it)


def test_a_dropped_iterator_stops_its_thread():
    it = iter(ThreadPrefetcher(CountingLoader(), depth=1, on_demand=True))
    next(it)
    assert len(prefetch_threads()) == 1
    del it  # the thread holds the channel, not the iterator: collected, and the thread stops
    assert wait_for_no_thread()


def test_request_next_batch_leaves_other_iterators_alone():
    plain = iter([1, 2])
    request_next_batch(plain)  # no load_next: nothing happens
    assert next(plain) == 1
