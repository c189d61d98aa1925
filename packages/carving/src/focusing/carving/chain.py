"""Running voxel selectors outside the Focusing trainer: build them by name, chain them.

Why: a selector reads only voxel coordinates, a camera and a ground-truth render, so any
sparse-voxel model can use one. What a model needs besides is the loop the Focusing trainer
runs between encoding and decoding: each selector sees the voxels the previous one kept, the
rows compose back to the input, and a selector that returns a new camera (zoom, far-plane)
means the ground truth must be rendered again before the next selector or the loss. That loop
is `run_selectors`, written once in core (focusing.core.selection, which the VAE trainer runs
too) and re-exported here beside the helpers that build selectors and voxels.
"""

from __future__ import annotations

import torch

from focusing.core.selection import ChainResult, build_selector, run_selectors
from focusing.core.sparse.tensor import SparseTensor

__all__ = ["ChainResult", "build_selector", "one_shape_voxels", "run_selectors"]


def one_shape_voxels(xyz: torch.Tensor, resolution: int) -> SparseTensor:
    """One shape's voxels as selectors take them: coords [N,3] (long, in [0, R)) -> a
    SparseTensor with coords [N,4] (batch 0) and no features [N,0]."""
    xyz = torch.as_tensor(xyz)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"voxel coords must be [N,3] (x, y, z), got {list(xyz.shape)}")
    if xyz.is_floating_point() or xyz.dtype == torch.bool:
        raise ValueError(f"voxel coords must be integers, got {xyz.dtype}")
    xyz = xyz.long()
    coords = torch.cat([xyz.new_zeros(xyz.shape[0], 1), xyz], dim=1)
    return SparseTensor(coords, torch.zeros(xyz.shape[0], 0, device=xyz.device), int(resolution))
