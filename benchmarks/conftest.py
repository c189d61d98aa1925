"""Shared benchmark fixtures: surface voxels of the example meshes, voxelised once per session."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

MESHES = Path(__file__).resolve().parents[1] / "examples" / "meshes"


@lru_cache(maxsize=None)
def surface_coords(mesh: str, resolution: int) -> torch.Tensor:
    """Surface voxels of examples/meshes/<mesh>.off at `resolution` as coords [N,4] (batch 0)."""
    from focusing.core.geometry.meshio import load_mesh
    from focusing.core.geometry.voxelize import surface_voxels

    v = surface_voxels(load_mesh(MESHES / f"{mesh}.off"), resolution)
    return torch.cat([torch.zeros(v.shape[0], 1, dtype=torch.long), v], dim=1)
