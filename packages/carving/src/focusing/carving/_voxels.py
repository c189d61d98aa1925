"""Shared voxel geometry of the selectors: input checks, membership, dilation, camera tests.

The basics come from core: voxel centres (geometry.voxelize), coordinate lookups
(sparse.hashing.CoordIndex), kernel offsets (sparse.kernels) and the camera projection
(geometry.camera.Camera). Conventions: at grid resolution R, voxel (i, j, k) spans
[-0.5 + i/R, -0.5 + (i+1)/R] per axis; view depth is -z_view; pixel (u, v) = (column, row).
Selection works per shape: the voxels of one batch element (all rows share one batch index).
"""

from __future__ import annotations

import torch

from focusing.core.geometry.camera import Camera
from focusing.core.geometry.voxelize import voxel_centers
from focusing.core.sparse.hashing import CoordIndex
from focusing.core.sparse.kernels import KERNEL3_OFFSETS

# Up to this resolution dilation uses a dense byte grid ((R+2)^3 bytes: 135 MB at 512).
_DENSE_MAX_RES = 512


def shape_coords(voxels) -> tuple[torch.Tensor, int]:
    """Spatial coords [N,3] (long) and resolution of a one-shape SparseTensor; checks its input."""
    coords = getattr(voxels, "coords", None)
    resolution = getattr(voxels, "resolution", None)
    if coords is None or resolution is None:
        raise TypeError(
            f"voxels must be a SparseTensor (coords [N,4], resolution), got {type(voxels).__name__}"
        )
    if coords.ndim != 2 or coords.shape[1] != 4:
        raise ValueError(f"voxel coords must be [N,4] (batch, x, y, z), got {tuple(coords.shape)}")
    resolution = int(resolution)
    if resolution <= 0:
        raise ValueError(f"voxel resolution must be positive, got {resolution}")
    if coords.shape[0] and bool((coords[:, 0] != coords[0, 0]).any()):
        # Selection is per view of one shape; a batched tensor must be split first.
        raise ValueError(
            "voxel selectors work on one shape: every row must share one batch index, got "
            f"batch indices {sorted(set(coords[:, 0].tolist()))[:8]}"
        )
    xyz = coords[:, 1:].long()
    if xyz.shape[0] and (bool((xyz < 0).any()) or bool((xyz >= resolution).any())):
        raise ValueError(f"voxel coords outside the grid [0, {resolution})")
    return xyz, resolution


def empty_index(device=None) -> torch.Tensor:
    """An empty long index [0]."""
    return torch.zeros(0, dtype=torch.long, device=device)


def voxel_index(xyz: torch.Tensor) -> CoordIndex:
    """Core's coordinate index of one shape's voxels xyz [N,3] (rows are what lookups return)."""
    return CoordIndex(torch.nn.functional.pad(xyz, (1, 0)))


def find_rows(index: CoordIndex, xyz: torch.Tensor, resolution: int) -> torch.Tensor:
    """Row [M] (long) of each query voxel xyz [M,3] in `index`, -1 where absent or off the grid."""
    inside = ((xyz >= 0) & (xyz < resolution)).all(dim=1)
    rows = index.lookup(torch.nn.functional.pad(xyz.clamp(0, resolution - 1), (1, 0)))
    return torch.where(inside, rows, torch.full_like(rows, -1))


def dilate_within(
    xyz: torch.Tensor, resolution: int, seed_rows: torch.Tensor, offsets: torch.Tensor = None
) -> torch.Tensor:
    """Rows [K'] (sorted, unique) of the voxels of xyz [N,3] within a 3x3x3 (or `offsets`)
    neighbourhood of its seed rows [K]."""
    if seed_rows.numel() == 0:
        return empty_index(xyz.device)
    r = int(resolution)
    if offsets is None and r <= _DENSE_MAX_RES:
        # A dense occupancy grid dilated by three separable 1D maxima costs O(R^3) byte ops,
        # far less than 27 hash lookups per seed at high resolution.
        grid = torch.zeros(r + 2, r + 2, r + 2, dtype=torch.bool, device=xyz.device)
        s = xyz[seed_rows] + 1
        grid[s[:, 0], s[:, 1], s[:, 2]] = True
        for axis in range(3):
            g = grid.clone()
            lo = [slice(None)] * 3
            hi = [slice(None)] * 3
            lo[axis], hi[axis] = slice(0, -1), slice(1, None)
            g[tuple(lo)] |= grid[tuple(hi)]
            g[tuple(hi)] |= grid[tuple(lo)]
            grid = g
        a = xyz + 1
        return grid[a[:, 0], a[:, 1], a[:, 2]].nonzero().squeeze(1)
    offsets = (KERNEL3_OFFSETS if offsets is None else offsets).to(xyz.device)
    seeds = xyz[seed_rows]
    neigh = (seeds[:, None, :] + offsets[None, :, :]).reshape(-1, 3)
    return rows_of(neigh, xyz, r)


def rows_of(xyz_query: torch.Tensor, xyz: torch.Tensor, resolution: int) -> torch.Tensor:
    """Sorted unique rows [K] of xyz [N,3] that the query voxels [M,3] name."""
    rows = find_rows(voxel_index(xyz), xyz_query, resolution)
    return torch.unique(rows[rows >= 0])


# --- camera tests ----------------------------------------------------------------------------


def frustum_corners(camera: Camera) -> torch.Tensor:
    """World corners [8,3] (float64) of the camera's view frustum between its near and far
    planes (clip-space cube [-1, 1]^3 mapped back; works for zoomed, off-centre projections)."""
    signs = torch.tensor(
        [[x, y, z, 1.0] for x in (-1.0, 1.0) for y in (-1.0, 1.0) for z in (-1.0, 1.0)],
        dtype=torch.float64,
    )
    inv = torch.linalg.inv(camera.full_matrix.to(torch.float64))
    h = signs @ inv.T
    return h[:, :3] / h[:, 3:4]


def frustum_planes(camera: Camera) -> torch.Tensor:
    """Six inward world planes [6,4] (n, d; n.x + d >= 0 inside), normals of unit length."""
    m = camera.full_matrix.to(torch.float64)
    planes = torch.stack([m[3] + m[0], m[3] - m[0], m[3] + m[1], m[3] - m[1],
                          m[3] + m[2], m[3] - m[2]])
    return planes / planes[:, :3].norm(dim=1, keepdim=True)


def _frustum_edge_dirs(corners: torch.Tensor) -> torch.Tensor:
    # corners are indexed x*4 + y*2 + z (signs -1/+1); edges join corners differing in one bit.
    pairs = [(a, a | b) for b in (1, 2, 4) for a in range(8) if not a & b]
    d = torch.stack([corners[j] - corners[i] for i, j in pairs])
    return d / d.norm(dim=1, keepdim=True)


def cubes_in_frustum(camera: Camera, xyz: torch.Tensor, resolution: int) -> torch.Tensor:
    """Mask [N] (bool): the cube of each voxel xyz [N,3] intersects the view frustum between
    near and far (exact separating-axis test of two convex polytopes, touching counts)."""
    n = xyz.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.bool, device=xyz.device)
    dev = xyz.device
    half = 0.5 / resolution
    c = voxel_centers(xyz, resolution, torch.float64)
    planes = frustum_planes(camera).to(dev)
    # Box vs plane: signed distance of the centre against the box's support radius.
    dist = c @ planes[:, :3].T + planes[:, 3]  # [N,6]
    radius = half * planes[:, :3].abs().sum(dim=1)  # [6]
    outside = (dist < -radius - 1e-12).any(dim=1)
    inside = (dist >= radius).all(dim=1)
    keep = inside.clone()
    amb = (~outside & ~inside).nonzero().squeeze(1)
    if amb.numel():
        # Boxes that straddle a plane but are not cut off by one: the remaining separating
        # axes are the box axes and the cross products of box axes with frustum edges.
        corners = frustum_corners(camera).to(dev)
        edges = _frustum_edge_dirs(corners)
        eye = torch.eye(3, dtype=torch.float64, device=dev)
        cross = torch.cross(eye[:, None, :].expand(3, 12, 3), edges[None].expand(3, 12, 3), dim=-1)
        cross = cross.reshape(-1, 3)
        cross = cross[cross.norm(dim=1) > 1e-9]
        axes = torch.cat([eye, cross / cross.norm(dim=1, keepdim=True)])  # [A,3]
        fc = corners @ axes.T  # [8,A]
        f_lo, f_hi = fc.min(dim=0).values, fc.max(dim=0).values
        ca = c[amb] @ axes.T  # [M,A]
        r = half * axes.abs().sum(dim=1)
        separated = ((ca + r) < f_lo - 1e-12) | ((ca - r) > f_hi + 1e-12)
        keep[amb] = ~separated.any(dim=1)
    return keep


def project_centres(camera: Camera, xyz: torch.Tensor, resolution: int):
    """Pixel columns, rows [N] (long, floor of the projection), view depths [N] (float64) of
    the voxel centres, and a mask [N] of those that land in front of the camera in the image."""
    pix, depth = camera.project(voxel_centers(xyz, resolution, torch.float64).to(xyz.device))
    col = torch.floor(pix[:, 0])
    row = torch.floor(pix[:, 1])
    ok = (depth > 0) & (col >= 0) & (col < camera.width) & (row >= 0) & (row < camera.height)
    ok &= torch.isfinite(col) & torch.isfinite(row)
    col = torch.where(ok, col, torch.zeros_like(col)).long()
    row = torch.where(ok, row, torch.zeros_like(row)).long()
    return col, row, depth, ok


def foreground(ground_truth) -> torch.Tensor:
    """Mask [H,W] (bool) of the pixels where the ground truth sees a surface (depth > 0)."""
    depth = ground_truth.depth
    if depth.ndim != 2:
        raise ValueError(f"ground-truth depth must be one view [H,W], got {tuple(depth.shape)}")
    return depth > 0


def check_render(camera: Camera, ground_truth) -> None:
    """Raise if the ground-truth render does not match the camera's image size."""
    h, w = ground_truth.depth.shape[-2:]
    if (h, w) != (camera.height, camera.width):
        raise ValueError(
            f"ground-truth render is {w}x{h} but the camera renders {camera.width}x{camera.height}"
            " (re-render the ground truth after a camera change)"
        )
