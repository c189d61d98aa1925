"""The `all` selector: keeps every voxel (the control of every ablation)."""

from __future__ import annotations

import numpy as np
import torch

from focusing.core.plugin_system.base import VoxelSelector
from focusing.core.plugin_system.types import Selection

from focusing.carving._voxels import shape_coords


class AllSelector(VoxelSelector):
    """Keeps all voxels and the camera (even a camera that sees nothing: it is the control)."""

    name = "all"
    default_stage = "output"

    def __init__(self):
        super().__init__()

    def select(self, voxels, camera, ground_truth, rng: np.random.Generator) -> Selection:
        """Return every row [N] of `voxels` and the unchanged camera."""
        xyz, _ = shape_coords(voxels)
        return Selection(torch.arange(xyz.shape[0], device=xyz.device), camera, False)
