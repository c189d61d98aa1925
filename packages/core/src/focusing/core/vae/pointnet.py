"""Local PointNet: pools each active voxel's oriented surface points into one feature."""

from __future__ import annotations

import torch
from torch import nn

from focusing.core.sparse.tensor import SparseTensor


def points_to_voxels(points: torch.Tensor, voxels: SparseTensor, batch: torch.Tensor | None = None
                     ) -> torch.Tensor:
    """Row of the active voxel holding each point [P] (-1 when its voxel is inactive); points [P,3]."""
    r = voxels.resolution
    ijk = ((points + 0.5) * r).floor().long().clamp_(0, r - 1)
    b = torch.zeros(len(points), 1, dtype=torch.long) if batch is None else batch[:, None].long()
    return voxels.hash().lookup(torch.cat([b.to(ijk.device), ijk], dim=1))


class LocalPointNet(nn.Module):
    """Per point: (position relative to its voxel centre in voxel units, normal) -> MLP; max-pool
    per voxel. Voxels without points get a learned empty feature."""

    def __init__(self, hidden: int = 32, out: int = 32):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(6, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
            nn.Linear(hidden, out),
        )
        self.empty = nn.Parameter(torch.zeros(out))
        self.out_channels = out

    def forward(self, points: torch.Tensor, normals: torch.Tensor, voxels: SparseTensor,
                batch: torch.Tensor | None = None) -> torch.Tensor:
        """points, normals [P,3] (unit box), voxels at R -> features [N, out]."""
        row = points_to_voxels(points, voxels, batch)
        keep = row >= 0
        row, points, normals = row[keep], points[keep], normals[keep]
        r = voxels.resolution
        centers = (voxels.coords[row, 1:].to(points.dtype) + 0.5) / r - 0.5
        local = (points - centers) * r  # in [-0.5, 0.5] per axis
        h = self.mlp(torch.cat([local, normals], dim=1))
        n = len(voxels)
        pooled = h.new_full((n, h.shape[1]), float("-inf"))
        pooled = pooled.scatter_reduce(0, row[:, None].expand_as(h), h, reduce="amax")
        has = torch.zeros(n, dtype=torch.bool, device=h.device)
        has[row] = True
        return torch.where(has[:, None], pooled, self.empty.expand(n, -1))
