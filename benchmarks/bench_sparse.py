"""Sparse backends side by side: submanifold conv forward+backward, and sparse window attention.

Inputs: exact surface voxels of real meshes (bunny00, a range scan; armadillo) at 64^3, 128^3 and
256^3, float32, one shape per batch. Every available sparse backend runs in the same session.

- `subm_fresh`: a new SparseTensor every call, so each backend builds its neighbour map / rule
  book inside the timed region (a first layer on new coordinates);
- `subm_cached`: the same SparseTensor every call, so backends that cache maps on the tensor reuse
  them (every later layer of a network on the same coordinates);
- `window_attention`: SparseWindowAttention (dim 64, 4 heads, window 8, shifted) forward+backward,
  partition cached (backend-independent).

Run:  .venv/bin/pytest benchmarks/bench_sparse.py --benchmark-only -p no:cacheprovider
Results and analysis: benchmarks/results/sparse.md.
"""

from __future__ import annotations

import os

import pytest
import torch

from focusing.core.plugin_system import get_registry
from focusing.core.sparse.attention import SparseWindowAttention
from focusing.core.sparse.tensor import SparseTensor

from conftest import surface_coords

BACKENDS = get_registry("sparse_backend").names(available_only=True)
# BENCH_SPARSE_MESHES=bunny00,armadillo picks the meshes (default: the range scan only)
MESHES = os.environ.get("BENCH_SPARSE_MESHES", "bunny00").split(",")
RESOLUTIONS = [64, 128, 256]


def _rounds(n: int) -> int:
    return 2 if n > 100_000 else 3


@pytest.mark.parametrize("channels", [32, 64])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("resolution", RESOLUTIONS)
@pytest.mark.parametrize("mesh", MESHES)
@pytest.mark.parametrize("maps", ["fresh", "cached"])
def test_subm_conv_fwd_bwd(benchmark, maps, mesh, resolution, backend, channels):
    coords = surface_coords(mesh, resolution)
    n = coords.shape[0]
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(n, channels, generator=g).requires_grad_()
    weight = (torch.randn(27, channels, channels, generator=g)
              / (27 * channels) ** 0.5).requires_grad_()
    be = get_registry("sparse_backend").get(backend)()
    shared = SparseTensor(coords, feats, resolution)

    def step():
        x = SparseTensor(coords, feats, resolution) if maps == "fresh" else shared
        out = be.submanifold_conv(x, weight)
        out.feats.sum().backward()

    benchmark.extra_info.update(voxels=n, channels=channels, backend=backend, mesh=mesh,
                                R=resolution, maps=maps)
    benchmark.group = f"subm {maps} {mesh} R={resolution} C={channels}"
    benchmark.pedantic(step, rounds=_rounds(n), iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("resolution", RESOLUTIONS)
@pytest.mark.parametrize("mesh", MESHES)
def test_window_attention_fwd_bwd(benchmark, mesh, resolution):
    coords = surface_coords(mesh, resolution)
    n = coords.shape[0]
    torch.manual_seed(0)
    attn = SparseWindowAttention(64, 4, 8, shift=True)
    x = SparseTensor(coords, torch.randn(n, 64, requires_grad=True), resolution)

    def step():
        attn(x).feats.sum().backward()

    benchmark.extra_info.update(voxels=n, channels=64, backend="torch", mesh=mesh, R=resolution,
                                maps="cached")
    benchmark.group = f"attention {mesh} R={resolution}"
    benchmark.pedantic(step, rounds=_rounds(n), iterations=1, warmup_rounds=1)
