"""The lower bound of a view: the voxels that contain a visible surface point.

The fewest voxels that can produce the visible surface are those that the ground-truth depth
map, back-projected to 3D at every foreground pixel centre, falls into. It depends on the
image resolution: a pixel samples one surface point, so when a voxel projects to less than a
pixel (e.g. 256^3 voxels in a 256^2 full-object view) some visible voxels are never sampled
and the bound shrinks towards the number of foreground pixels. Those voxels do not change
the rendered image at that resolution either, which is why the bound is the right yardstick.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from focusing.core.geometry.camera import Camera

from focusing.carving._voxels import check_render, find_rows, foreground, shape_coords, voxel_index


@dataclass
class Bound:
    """The bound of one view: rows [B] of the voxels (sorted, unique) that contain a visible
    surface point, and how many such voxels lie outside the voxel set (0 when it covers the
    surface)."""

    index: torch.Tensor
    missing: int

    @property
    def size(self) -> int:
        """Number of bound voxels inside the set."""
        return int(self.index.numel())


def visible_points(camera: Camera, ground_truth) -> torch.Tensor:
    """World points [P,3] (float64) of the ground-truth surface seen at each foreground pixel
    centre."""
    check_render(camera, ground_truth)
    fg = foreground(ground_truth)
    rows, cols = fg.nonzero(as_tuple=True)
    if rows.numel() == 0:
        return torch.zeros(0, 3, dtype=torch.float64)
    pix = torch.stack([cols, rows], dim=1).to(torch.float64) + 0.5
    depth = ground_truth.depth[rows, cols].to(torch.float64)
    return camera.unproject(pix, depth)


def point_voxels(points: torch.Tensor, resolution: int) -> torch.Tensor:
    """Voxel coords [P,3] (long) containing world points [P,3]; off-grid points give coords
    outside [0, R) (callers drop them)."""
    return torch.floor((points + 0.5) * resolution).long()


def lower_bound(voxels, camera: Camera, ground_truth) -> Bound:
    """The bound of a view: the rows of `voxels` hit by the back-projected depth map."""
    xyz, res = shape_coords(voxels)
    pts = visible_points(camera, ground_truth).to(xyz.device)
    if pts.shape[0] == 0:
        return Bound(torch.zeros(0, dtype=torch.long, device=xyz.device), 0)
    vox = torch.unique(point_voxels(pts, res), dim=0)
    rows = find_rows(voxel_index(xyz), vox, res)
    return Bound(torch.unique(rows[rows >= 0]), int((rows < 0).sum()))


def cost_and_recall(selected: torch.Tensor, bound: Bound) -> tuple[float, float]:
    """(kept / bound, fraction of the bound's voxels kept) of a selection's rows [K]."""
    b = bound.size
    if b == 0:
        return (float("nan"), float("nan"))
    hit = torch.isin(bound.index, selected.to(bound.index.device)).sum().item()
    return selected.numel() / b, hit / b
