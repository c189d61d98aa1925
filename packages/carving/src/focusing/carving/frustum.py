"""The `frustum` selector (TripoSF): voxels whose cube intersects the view frustum."""

from __future__ import annotations

import numpy as np

from focusing.core.plugin_system.base import VoxelSelector
from focusing.core.plugin_system.types import Selection

from focusing.carving._voxels import cubes_in_frustum, shape_coords


class FrustumSelector(VoxelSelector):
    """Keeps the voxels whose cube meets the frustum between near and far (an exact
    separating-axis test on the cube, not on its centre), camera unchanged."""

    name = "frustum"
    default_stage = "output"

    def __init__(self):
        super().__init__()

    def select(self, voxels, camera, ground_truth, rng: np.random.Generator) -> Selection:
        """Return the sorted rows [K] of the voxels whose cube meets the frustum."""
        xyz, res = shape_coords(voxels)
        return Selection(cubes_in_frustum(camera, xyz, res).nonzero().squeeze(1), camera, False)
