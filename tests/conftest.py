"""Shared fixtures; the mesh helpers live in meshdata.py (import them from there)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # so every test folder can `import meshdata`

from meshdata import CLOSED_MESHES, MESHES, OPEN_MESHES, mesh_file  # noqa: E402,F401

# One intra-op thread: OpenMP workers that spin-wait make small sparse ops tens of times slower
# whenever anything else shares the 2 cores (measured in benchmarks/results/render.md).
torch.set_num_threads(1)


@pytest.fixture
def meshes_dir() -> Path:
    return MESHES
