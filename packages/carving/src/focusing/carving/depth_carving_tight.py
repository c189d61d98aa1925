"""The `depth-carving-tight` selector: the mesh-extraction support of the visible surface.

Our tighter rule (issue 5, "Goal"). The paper's rule keeps everything in front of the
visible surface plus r behind it plus a 3x3x3 dilation; but a dual-contouring mesher
(SparseFlex / FlexiCubes) builds the face of a sign-changing grid edge from the dual
vertices of the four cubes around that edge. So the cubes needed to reproduce the surface
seen at a pixel are: the voxel v containing the visible point X, and every face- or
edge-neighbour w of v whose shared face / edge is crossed by the surface near X. We locate
the surface near X by its tangent plane (normal from the ground-truth render), thickened to
a slab of +-margin voxels so that a fitted mesh that deviates from the ground truth, and a
curved surface, are still covered; the voxels containing X +- margin * n are treated the
same way. Pixels near a crease of the normal map or a silhouette (where the surface is not
one plane and a fitted mesh cuts the corner), and pixels without a normal, fall back to the
full 3x3x3 neighbourhood of their voxel.

Recall of the lower bound is 1 by construction (v is always kept when it is active), and the
count is driven by the visible area instead of the depth range of the view.
"""

from __future__ import annotations

import numpy as np
import torch

from focusing.core.plugin_system.base import VoxelSelector
from focusing.core.sparse.kernels import KERNEL3_OFFSETS
from focusing.core.plugin_system.types import Selection

from focusing.carving._voxels import (
    check_render,
    empty_index,
    foreground,
    project_centres,
    rows_of,
    shape_coords,
)
from focusing.carving.bound import point_voxels, visible_points

# Self, the 6 face neighbours and the 12 edge neighbours (corner neighbours share no edge).
_OFFSETS_19 = KERNEL3_OFFSETS[KERNEL3_OFFSETS.abs().sum(dim=1) <= 2]
_CHUNK = 1 << 15  # pixels per vectorised batch (bounds the peak memory)


def support_voxels(
    points: torch.Tensor, normals: torch.Tensor, resolution: int, margin: float
) -> torch.Tensor:
    """Voxel coords [K,3] (long, unique, may fall off the grid) of the cubes that a dual mesher
    needs for the surface points [P,3] with unit normals [P,3] (zero normal: full 3x3x3)."""
    h = 1.0 / resolution
    dev = points.device
    offs = _OFFSETS_19.to(dev)
    o = offs.to(torch.float64)
    free = (offs == 0).to(torch.float64)  # axes along which the shared element extends
    pad = resolution + 4  # keys of coords in [-2, R + 2) stay unique
    # Adding an offset to a voxel adds its key offset (no wrap-around inside the padding).
    okey = (offs[:, 0] * pad + offs[:, 1]) * pad + offs[:, 2]
    full = KERNEL3_OFFSETS.to(dev)
    okey27 = (full[:, 0] * pad + full[:, 1]) * pad + full[:, 2]
    out = []
    for s in range(0, points.shape[0], _CHUNK):
        x = points[s : s + _CHUNK].to(torch.float64)
        n = normals[s : s + _CHUNK].to(torch.float64)
        has_n = n.norm(dim=1) > 0.5
        shifts = [x] if margin <= 0 else [x, x + margin * h * n, x - margin * h * n]
        for y in shifts:
            v = point_voxels(y, resolution).clamp(-1, resolution)  # [p,3]; off-grid stays off
            # The element shared by v and v + o has its centre at c_v + o h / 2 and half
            # extent h / 2 along the axes where o is 0 (a face, an edge, or v itself); the
            # slab |n.(p - x)| <= margin h meets it iff the centre's distance is within reach.
            a = (((v.to(torch.float64) + 0.5) * h - 0.5 - x) * n).sum(dim=1, keepdim=True)
            dist = (a + 0.5 * h * (n @ o.T)).abs()  # [p,19]
            reach = 0.5 * h * (n.abs() @ free.T) + margin * h
            crossed = (dist <= reach + 1e-12) | ~has_n[:, None]
            # Many pixels share a voxel: OR their masks per voxel before making keys.
            kv = ((v[:, 0] + 2) * pad + (v[:, 1] + 2)) * pad + (v[:, 2] + 2)
            uk, inv = torch.unique(kv, return_inverse=True)
            acc = torch.zeros(uk.numel(), offs.shape[0], dtype=torch.int32, device=dev)
            acc.index_add_(0, inv, crossed.to(torch.int32))
            ui, oi = (acc > 0).nonzero(as_tuple=True)
            out.append(uk[ui] + okey[oi])
        if bool((~has_n).any()):
            kv = point_voxels(x[~has_n], resolution).clamp(-1, resolution)
            kv = torch.unique(((kv[:, 0] + 2) * pad + (kv[:, 1] + 2)) * pad + (kv[:, 2] + 2))
            out.append((kv[:, None] + okey27[None]).reshape(-1))
    if not out:
        return torch.zeros(0, 3, dtype=torch.long, device=dev)
    k = torch.unique(torch.cat(out))
    return torch.stack([k // (pad * pad), (k // pad) % pad, k % pad], dim=1) - 2


def image_edges(ground_truth, resolution: int, crease_cos: float, window: int) -> torch.Tensor:
    """Mask [H,W] (bool) of foreground pixels within `window` pixels of a normal crease (the
    normals in the window differ by an angle whose cosine is below crease_cos)."""
    fg = foreground(ground_truth)
    if window <= 0:
        return torch.zeros_like(fg)
    n = ground_truth.normal.to(torch.float64)
    k = 2 * window + 1
    nmin = []
    for c in range(3):
        ch = torch.where(fg, n[..., c], torch.zeros_like(n[..., c]))
        hi = torch.nn.functional.max_pool2d(ch[None, None], k, 1, window)[0, 0]
        lo = -torch.nn.functional.max_pool2d(-ch[None, None], k, 1, window)[0, 0]
        nmin.append((hi - lo))
    # |n1 - n2| = sqrt(2 (1 - cos)); the per-component spread over the window bounds it from
    # above, so this flags every crease (and a few near-creases: cheap and safe). Background
    # counts as a zero normal, so silhouettes are flagged too.
    spread = torch.stack(nmin, -1).norm(dim=-1)
    crease = spread > np.sqrt(2.0 * (1.0 - crease_cos))
    return fg & crease


class DepthCarvingTightSelector(VoxelSelector):
    """Keeps the voxels of the visible surface and the neighbours that share a crossed face or
    edge with them (the cubes a dual mesher uses for the visible faces); camera unchanged.

    `margin` (voxels) thickens the tangent plane of each visible point; pixels within
    `edge_window` pixels of a normal crease sharper than `crease_deg` (or of the background)
    take the full 3x3x3 neighbourhood. With `front` (default) the voxels whose centre lies in
    front of the visible surface are kept as well, so that a decoded surface floating there is
    rendered and penalised (without it the rule is invariant only where the decoded surface
    is within the margin of the ground truth)."""

    name = "depth-carving-tight"
    default_stage = "latent"

    def __init__(
        self, margin: float = 0.25, crease_deg: float = 30.0, edge_window: int = 1,
        front: bool = True,
    ):
        if float(margin) < 0:
            raise ValueError(f"depth-carving-tight margin must be >= 0, got {margin}")
        if not 0.0 < float(crease_deg) <= 180.0:
            raise ValueError(
                f"depth-carving-tight crease_deg must be in (0, 180], got {crease_deg}")
        if int(edge_window) < 0:
            raise ValueError(f"depth-carving-tight edge_window must be >= 0, got {edge_window}")
        super().__init__(
            margin=float(margin), crease_deg=float(crease_deg), edge_window=int(edge_window),
            front=bool(front),
        )
        self.front = bool(front)
        self.margin = float(margin)
        self.crease_cos = float(np.cos(np.radians(crease_deg)))
        self.edge_window = int(edge_window)

    def select(self, voxels, camera, ground_truth, rng: np.random.Generator) -> Selection:
        """Return the sorted rows [K] of the support voxels of the visible surface."""
        xyz, res = shape_coords(voxels)
        check_render(camera, ground_truth)
        if xyz.shape[0] == 0:
            return Selection(empty_index(xyz.device), camera, False)
        fg = foreground(ground_truth)
        pts = visible_points(camera, ground_truth).to(xyz.device)
        if pts.shape[0] == 0:
            return Selection(empty_index(xyz.device), camera, False)
        normals = ground_truth.normal[fg].to(xyz.device, torch.float64)
        norm = normals.norm(dim=1, keepdim=True)
        normals = torch.where(norm > 0.5, normals / norm.clamp(min=1e-12),
                              torch.zeros_like(normals))
        # At a crease of the normal map (and at silhouettes) the surface is not one plane across
        # the voxel and a fitted mesh cuts the corner through cubes that neither plane touches:
        # use the full 3x3x3 neighbourhood there (a zero normal asks for it).
        edge = image_edges(ground_truth, res, self.crease_cos, self.edge_window)[fg].to(xyz.device)
        normals[edge] = 0.0
        cand = support_voxels(pts, normals, res, self.margin)
        keep = rows_of(cand, xyz, res)
        if self.front:
            # Free space in front of the visible surface stays: a decoded surface there (a
            # floater) would show in the full render, so the loss must see it.
            col, row, d, ok = project_centres(camera, xyz, res)
            depth_map = ground_truth.depth.to(xyz.device, dtype=d.dtype)
            ok &= fg.to(xyz.device)[row, col] & (d <= depth_map[row, col])
            keep = torch.unique(torch.cat([keep, ok.nonzero().squeeze(1)]))
        return Selection(keep, camera, False)
