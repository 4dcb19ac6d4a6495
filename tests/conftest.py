"""Shared test settings."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The test networks are tiny: on this 2-core machine one intra-op thread ran their convs
    several times faster than two (two threads spin against each other and other processes)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def seeded_rngs():
    """Every test starts from the same random state, whichever tests ran before it: models
    built without ``default_setup`` (which seeds) draw their initial weights from the global
    generators, and a start left by earlier tests once diverged to NaN in one CI leg."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield
