"""The `depth-carving` selector (Focusing, sec. 3.2): drop voxels hidden behind the visible surface.

A voxel's centre is projected to pixel (u, v) at view depth d; it is kept when
d <= D(u, v) + r, D being the ground-truth depth map (the paper prints the inequality the
other way round; the only reading that carves is "not deeper than r behind the visible
surface"). Centres outside the image, behind the camera or on background pixels are
dropped. Then the 3x3x3 neighbourhood of every kept voxel, within the active set, is added
back (robustness at silhouettes and at the image border).
"""

from __future__ import annotations

import numpy as np

from focusing.core.plugin_system.base import VoxelSelector
from focusing.core.plugin_system.types import Selection

from focusing.carving._voxels import (
    check_render,
    dilate_within,
    empty_index,
    foreground,
    project_centres,
    shape_coords,
)


class DepthCarvingSelector(VoxelSelector):
    """Paper rule: keep d <= D(u, v) + r at the centre pixel, then dilate 3x3x3 in the active set.

    r is in world units; by default 2 / resolution (two voxels). `dilate=False` skips the
    dilation (for ablations)."""

    name = "depth-carving"
    default_stage = "latent"

    def __init__(self, r: float | None = None, dilate: bool = True):
        if r is not None and float(r) < 0:
            raise ValueError(f"depth-carving threshold r must be >= 0, got {r}")
        super().__init__(r=r, dilate=dilate)
        self.r = None if r is None else float(r)
        self.dilate = bool(dilate)

    def select(self, voxels, camera, ground_truth, rng: np.random.Generator) -> Selection:
        """Return the sorted rows [K] of the carved (and dilated) voxels; camera unchanged."""
        xyz, res = shape_coords(voxels)
        check_render(camera, ground_truth)
        if xyz.shape[0] == 0:
            return Selection(empty_index(xyz.device), camera, False)
        r = 2.0 / res if self.r is None else self.r
        col, row, d, ok = project_centres(camera, xyz, res)
        depth_map = ground_truth.depth.to(xyz.device, dtype=d.dtype)
        fg = foreground(ground_truth).to(xyz.device)
        ok &= fg[row, col]
        ok &= d <= depth_map[row, col] + r
        kept = ok.nonzero().squeeze(1)
        if self.dilate and kept.numel():
            kept = dilate_within(xyz, res, kept)
        return Selection(kept, camera, False)
