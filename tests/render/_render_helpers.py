"""Shared helpers of the renderer tests: real meshes from examples/meshes, orbit views."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pytest
import torch

from focusing.core.geometry.camera import orbit_cameras
from focusing.core.geometry.meshio import load_mesh

MESHES = Path(__file__).resolve().parents[2] / "examples" / "meshes"


@lru_cache(maxsize=None)
def mesh_tensors(name: str, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """(vertices [V,3], faces [F,3]) of a normalised example mesh."""
    m = load_mesh(MESHES / f"{name}.off")
    return torch.tensor(m.vertices, dtype=dtype), torch.tensor(m.faces, dtype=torch.long)


def views(n: int, size: int = 128, seed: int = 0):
    """`n` random orbit cameras around the unit box at size x size pixels."""
    return orbit_cameras(n, width=size, height=size, rng=seed)


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    """Intersection over union of two boolean masks."""
    return float((a & b).sum()) / max(float((a | b).sum()), 1.0)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Run these small renders on one intra-op thread, restoring the setting afterwards.

    On the shared 2-core box, two OpenMP threads spin-wait for each other whenever other jobs
    hold a core, which made the many small ops of a render 10x slower (see
    benchmarks/results/render.md)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
