"""Shared helpers of the SparseFlex / FlexiCubes tests: analytic SDFs, their surface samples,
active cube shells, mesh topology checks, real meshes from examples/meshes."""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from focusing.core.geometry.meshio import load_mesh

MESHES = Path(__file__).resolve().parents[2] / "examples" / "meshes"

# Sizes chosen off the grid planes of R = 32 and 64, so no corner lies exactly on a surface.
SPHERE_R = 0.331
TORUS_R, TORUS_r = 0.283, 0.107
BOX_HALF = (0.301, 0.217, 0.263)


def sphere_sdf(p: torch.Tensor) -> torch.Tensor:
    """Exact SDF of a sphere of radius SPHERE_R at the origin; p [M,3] -> [M]."""
    return p.norm(dim=-1) - SPHERE_R


def torus_sdf(p: torch.Tensor) -> torch.Tensor:
    """Exact SDF of a torus around z (radii TORUS_R, TORUS_r); p [M,3] -> [M]."""
    q = torch.stack([torch.sqrt(p[:, 0] ** 2 + p[:, 1] ** 2) - TORUS_R, p[:, 2]], dim=-1)
    return q.norm(dim=-1) - TORUS_r


def box_sdf(p: torch.Tensor) -> torch.Tensor:
    """Exact SDF of an axis-aligned box of half sizes BOX_HALF; p [M,3] -> [M]."""
    q = p.abs() - torch.tensor(BOX_HALF, dtype=p.dtype)
    return q.clamp_min(0).norm(dim=-1) + q.max(dim=-1).values.clamp_max(0)


SDFS = {"sphere": sphere_sdf, "torus": torus_sdf, "box": box_sdf}
VOLUMES = {
    "sphere": 4.0 / 3.0 * math.pi * SPHERE_R**3,
    "torus": 2.0 * math.pi**2 * TORUS_R * TORUS_r**2,
    "box": 8.0 * BOX_HALF[0] * BOX_HALF[1] * BOX_HALF[2],
}
# Smallest radius of curvature of each surface (box: flat faces, its edges are treated apart).
MIN_RADIUS = {"sphere": SPHERE_R, "torus": TORUS_r, "box": math.inf}


def surface_samples(name: str, n: int, seed: int = 0) -> torch.Tensor:
    """n points [n,3] float64 exactly on the analytic surface (not area-uniform for the torus)."""
    g = torch.Generator().manual_seed(seed)
    if name == "sphere":
        d = torch.randn(n, 3, generator=g, dtype=torch.float64)
        return d / d.norm(dim=1, keepdim=True) * SPHERE_R
    if name == "torus":
        u, v = (torch.rand(2, n, generator=g, dtype=torch.float64) * 2 * math.pi).unbind(0)
        rr = TORUS_R + TORUS_r * torch.cos(v)
        return torch.stack([rr * torch.cos(u), rr * torch.sin(u), TORUS_r * torch.sin(v)], 1)
    b = torch.tensor(BOX_HALF, dtype=torch.float64)
    p = (torch.rand(n, 3, generator=g, dtype=torch.float64) * 2 - 1) * b
    axis = torch.randint(0, 3, (n,), generator=g)
    side = torch.randint(0, 2, (n,), generator=g).double() * 2 - 1
    p[torch.arange(n), axis] = side * b[axis]
    return p


def box_edge_points(per_edge: int = 100) -> torch.Tensor:
    """Points [12 * per_edge, 3] float64 on the 12 edges of the analytic box."""
    b = torch.tensor(BOX_HALF, dtype=torch.float64)
    t = torch.linspace(-1, 1, per_edge, dtype=torch.float64)
    out = []
    for a in range(3):
        u, v = (a + 1) % 3, (a + 2) % 3
        for su in (-1.0, 1.0):
            for sv in (-1.0, 1.0):
                p = torch.zeros(per_edge, 3, dtype=torch.float64)
                p[:, a], p[:, u], p[:, v] = t * b[a], su * b[u], sv * b[v]
                out.append(p)
    return torch.cat(out)


def shell_cubes(fn, resolution: int, band: float = 1.5) -> torch.Tensor:
    """Voxels [K,3] whose centre is within `band` voxels of the zero set of the 1-Lipschitz fn.

    A crossing grid edge is within sqrt(3)/2 voxel of the centres of its 4 cubes, so a band of
    1.5 voxels holds every cube that a closed surface needs.
    """
    r = torch.arange(resolution)
    ijk = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    centre = (ijk.double() + 0.5) / resolution - 0.5
    return ijk[fn(centre).abs() < band / resolution]


def edge_face_counts(faces: np.ndarray) -> np.ndarray:
    """For every undirected edge of faces [F,3], the number of faces that contain it."""
    e = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    _, counts = np.unique(e, axis=0, return_counts=True)
    return counts


def directed_edges_paired(faces: np.ndarray) -> bool:
    """Consistent winding: every directed edge (a, b) occurs once and (b, a) occurs once."""
    d = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    key = d[:, 0].astype(np.int64) * (faces.max() + 1) + d[:, 1]
    rkey = d[:, 1].astype(np.int64) * (faces.max() + 1) + d[:, 0]
    return len(np.unique(key)) == len(key) and np.isin(rkey, key).all()


def sample_on_mesh(
    vertices: torch.Tensor, faces: torch.Tensor, n: int, seed: int = 0
) -> torch.Tensor:
    """n area-weighted points [n,3] on a triangle mesh (same dtype as vertices; differentiable)."""
    g = torch.Generator().manual_seed(seed)
    tri = vertices[faces]
    area = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]).norm(dim=1).detach()
    fid = torch.multinomial(area.double(), n, replacement=True, generator=g)
    r = torch.rand(n, 2, generator=g, dtype=vertices.dtype)
    flip = r.sum(1) > 1
    r[flip] = 1 - r[flip]
    t = tri[fid]
    return t[:, 0] + r[:, :1] * (t[:, 1] - t[:, 0]) + r[:, 1:] * (t[:, 2] - t[:, 0])


@lru_cache(maxsize=None)
def real_mesh(name: str):
    """A normalised example mesh (focusing Mesh)."""
    return load_mesh(MESHES / f"{name}.off")


def boundary_points(vertices: np.ndarray, faces: np.ndarray, step: float) -> np.ndarray:
    """Points [P,3] every `step` along the boundary edges (edges of exactly one face)."""
    e = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    u, c = np.unique(e, axis=0, return_counts=True)
    b = u[c == 1]
    if len(b) == 0:
        return np.zeros((0, 3))
    a, z = vertices[b[:, 0]], vertices[b[:, 1]]
    n = np.maximum(1, np.ceil(np.linalg.norm(z - a, axis=1) / step)).astype(np.int64)
    idx = np.repeat(np.arange(len(b)), n)
    t = (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)) / np.repeat(n, n)
    return a[idx] + t[:, None] * (z - a)[idx]
