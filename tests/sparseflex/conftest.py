"""SparseFlex tests run torch on one thread: their tensors are small, and on a shared 2-core
machine OpenMP's worker threads spin against other processes (measured: a 4,800-cube
extraction took 0.55 s on 2 threads under load, 0.005 s on one)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
