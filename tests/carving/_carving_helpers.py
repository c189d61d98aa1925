"""Shared set-up of the carving tests: real meshes, their active voxels, ground-truth renders."""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from focusing.carving.stats import make_voxels
from focusing.core.geometry.meshio import load_mesh
from focusing.core.geometry.voxelize import dilate_voxels, surface_voxels

MESHES = Path(__file__).resolve().parents[2] / "examples" / "meshes"


@functools.lru_cache(maxsize=None)
def mesh(name: str):
    """The normalised example mesh `name`."""
    return load_mesh(MESHES / f"{name}.off")


@functools.lru_cache(maxsize=None)
def active_xyz(name: str, resolution: int) -> torch.Tensor:
    """Dilated surface voxels [N,3] of an example mesh."""
    return dilate_voxels(surface_voxels(mesh(name), resolution), resolution)


def voxels_of(xyz: torch.Tensor, resolution: int):
    """One-shape SparseTensor (batch 0) of voxel coords [N,3]."""
    coords = torch.cat([torch.zeros(xyz.shape[0], 1, dtype=torch.long), xyz.long()], dim=1)
    return make_voxels(coords, resolution)
