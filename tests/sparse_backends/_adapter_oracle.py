"""Independent references for the backend adapter tests: dense F.conv3d and brute-force lookups."""

from __future__ import annotations

import itertools
from functools import lru_cache
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from focusing.core.geometry.meshio import load_mesh
from focusing.core.geometry.voxelize import surface_voxels
from focusing.core.plugin_system import get_registry

MESHES = Path(__file__).resolve().parents[2] / "examples" / "meshes"
ADAPTERS = ["spconv", "minkowski"]
# z fastest, written out here rather than imported, so the contract itself is under test
OFFSETS3 = list(itertools.product((-1, 0, 1), repeat=3))
OFFSETS2 = list(itertools.product((0, 1), repeat=3))


def backend_or_skip(name: str):
    """An instance of the registered backend `name`, or a pytest skip with its reason."""
    entry = get_registry("sparse_backend").entry(name)
    ok, reason = entry.availability()
    if not ok:
        pytest.skip(f"{name} not available here: {reason}")
    return entry.obj()


@lru_cache(maxsize=None)
def _surface(name: str, resolution: int) -> torch.Tensor:
    return surface_voxels(load_mesh(MESHES / f"{name}.off"), resolution)


def mesh_batch(names: tuple[str, ...], resolution: int, seed: int = 0) -> torch.Tensor:
    """Surface voxels of real meshes as one batch, rows shuffled; coords [N,4] long (b,x,y,z)."""
    parts = []
    for b, name in enumerate(names):
        v = _surface(name, resolution)
        parts.append(torch.cat([torch.full((v.shape[0], 1), b, dtype=torch.long), v], dim=1))
    coords = torch.cat(parts)
    g = torch.Generator().manual_seed(seed)
    return coords[torch.randperm(coords.shape[0], generator=g)]


def scatter_dense(coords: torch.Tensor, feats: torch.Tensor, batch: int, res: int) -> torch.Tensor:
    """Dense [B,C,R,R,R] grid holding feats at coords, zeros elsewhere (differentiable)."""
    dense = feats.new_zeros((batch, res, res, res, feats.shape[1]))
    dense = dense.index_put((coords[:, 0], coords[:, 1], coords[:, 2], coords[:, 3]), feats)
    return dense.permute(0, 4, 1, 2, 3)


def gather_dense(dense: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Rows of a dense [B,C,R,R,R] grid at coords; [N,C]."""
    return dense.permute(0, 2, 3, 4, 1)[coords[:, 0], coords[:, 1], coords[:, 2], coords[:, 3]]


def dense_submanifold(coords, feats, weight, bias, batch, res):
    """Kernel-3 conv via F.conv3d (cross-correlation: out[p] = sum_d in[p + d] W[d]) at coords."""
    c_in, c_out = weight.shape[1:]
    w = weight.reshape(3, 3, 3, c_in, c_out).permute(4, 3, 0, 1, 2)
    out = F.conv3d(scatter_dense(coords, feats, batch, res), w, bias, padding=1)
    return gather_dense(out, coords)


def dense_downsample(coords, feats, weight, bias, batch, res):
    """Kernel-2 stride-2 conv via F.conv3d; (parent coords sorted by (b,x,y,z), [M,C_out])."""
    c_in, c_out = weight.shape[1:]
    w = weight.reshape(2, 2, 2, c_in, c_out).permute(4, 3, 0, 1, 2)
    out = F.conv3d(scatter_dense(coords, feats, batch, res), w, bias, stride=2)
    parents = torch.cat([coords[:, :1], coords[:, 1:] // 2], dim=1).unique(dim=0)
    return parents, gather_dense(out, parents)


def dense_upsample(coords, feats, weight, bias, batch, res):
    """Kernel-2 stride-2 transposed conv via F.conv_transpose3d; (children at 8i+o, [8N,C_out])."""
    c_in, c_out = weight.shape[1:]
    w = weight.reshape(2, 2, 2, c_in, c_out).permute(3, 4, 0, 1, 2)
    out = F.conv_transpose3d(scatter_dense(coords, feats, batch, res), w, bias, stride=2)
    offsets = torch.tensor(OFFSETS2, dtype=torch.long)
    children = coords.repeat_interleave(8, dim=0)
    children[:, 1:] = children[:, 1:] * 2 + offsets.repeat(coords.shape[0], 1)
    return children, gather_dense(out, children)
