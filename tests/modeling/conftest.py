"""tests/modeling runs its tiny networks on one thread: faster than two for such small ops, and
immune to thread oversubscription when the CPU is shared."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
