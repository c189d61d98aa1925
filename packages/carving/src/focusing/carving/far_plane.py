"""The `far-plane` selector (TripoSF): the frustum's voxels, nearest first, up to a ratio alpha.

TripoSF controls the number of active voxels by moving the clipping planes: the far plane is
pulled in until only a fraction alpha of the in-frustum voxels lies in front of it, and the
near plane is pushed up to the nearest kept voxel. The returned camera carries the moved
planes, so that the ground truth rendered with it is clipped where the selection stops.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import torch

from focusing.core.geometry.camera import Camera
from focusing.core.geometry.voxelize import voxel_centers
from focusing.core.plugin_system.base import VoxelSelector
from focusing.core.plugin_system.types import Selection

from focusing.carving._voxels import (
    cubes_in_frustum,
    empty_index,
    shape_coords,
)


def with_clip_planes(camera: Camera, near: float, far: float) -> Camera:
    """The camera with new near/far planes (its projection's depth row rebuilt), else unchanged."""
    if not 0 < near < far:
        raise ValueError(f"need 0 < near < far, got near={near}, far={far}")
    p = camera.projection.clone()
    if not torch.allclose(p[3], torch.tensor([0.0, 0.0, -1.0, 0.0], dtype=p.dtype)):
        raise ValueError("far-plane needs a perspective projection whose last row is (0, 0, -1, 0)")
    # Zooming (eq. 4) only rewrites the x and y rows, so the depth row is still OpenGL's.
    p[2, :2] = 0.0
    p[2, 2] = (far + near) / (near - far)
    p[2, 3] = 2.0 * far * near / (near - far)
    return replace(camera, projection=p, near=float(near), far=float(far))


class FarPlaneSelector(VoxelSelector):
    """Keeps the nearest ceil(alpha * n) of the n in-frustum voxels (by view depth of the
    centre; ties at the cut are all kept) and returns the camera with moved clip planes."""

    name = "far-plane"
    default_stage = "output"

    def __init__(self, alpha: float = 0.5):
        if not 0.0 < float(alpha) <= 1.0:
            raise ValueError(f"far-plane alpha must be in (0, 1], got {alpha}")
        super().__init__(alpha=float(alpha))
        self.alpha = float(alpha)

    def select(self, voxels, camera, ground_truth, rng: np.random.Generator) -> Selection:
        """Return the rows [K] of the nearest in-frustum voxels and the re-clipped camera."""
        xyz, res = shape_coords(voxels)
        rows = cubes_in_frustum(camera, xyz, res).nonzero().squeeze(1)
        if rows.numel() == 0:
            return Selection(empty_index(xyz.device), camera, False)
        depth = camera.project(voxel_centers(xyz[rows], res, torch.float64))[1]
        k = max(1, math.ceil(self.alpha * rows.numel()))
        cut = torch.kthvalue(depth.cpu(), k).values.item()
        keep = rows[depth <= cut]
        half_diag = math.sqrt(3.0) * 0.5 / res
        # The new planes enclose the kept cubes' centres: near at the nearest cube's front,
        # far at the cut; both stay within the original planes.
        near = max(camera.near, float(depth[depth <= cut].min()) - half_diag)
        far = min(camera.far, cut)
        if far <= near:
            far = min(camera.far, near + half_diag)
        changed = (near, far) != (camera.near, camera.far)
        new_cam = with_clip_planes(camera, near, far) if changed else camera
        return Selection(keep, new_cam, changed)
