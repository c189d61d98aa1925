"""Embree ray-cast reference renderer (trimesh + embreex): the non-differentiable oracle.

One ray per pixel centre (Camera.pixel_rays). Embree finds the first triangle hit (in float32);
the hit distance is then recomputed in float64 as the ray/plane intersection of that triangle, so
depths are exact to float64 rounding for the triangle Embree picked. Both faces of a triangle are
hit (no back-face culling). Hits are not clipped to the camera's near/far planes: scenes are
expected to lie inside the depth range, as they do for orbit_cameras around the unit box.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from focusing.core.geometry.camera import Camera
from focusing.core.rendering import RenderOutput

__all__ = ["raycast", "embree_available"]


def embree_available() -> tuple[bool, str]:
    """(True, "") if trimesh's Embree intersector can be imported, else (False, reason)."""
    try:
        import embreex  # noqa: F401
        from trimesh.ray import ray_pyembree  # noqa: F401
    except ImportError as exc:
        return False, f"embreex is not installed ({exc}); `pip install embreex`"
    return True, ""


def _as_numpy(x, dtype) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(np.asarray(x, dtype=dtype))


def _intersector(vertices: np.ndarray, faces: np.ndarray):
    ok, reason = embree_available()
    if not ok:
        raise ImportError(f"raycast needs Embree: {reason}")
    import trimesh
    from trimesh.ray.ray_pyembree import RayMeshIntersector

    tm = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
    return RayMeshIntersector(tm)


def _cast_one(
    intersector, tri: np.ndarray, normals: np.ndarray, camera: Camera, dtype
) -> RenderOutput:
    origin, dirs = camera.pixel_rays(torch.float64)
    h, w = camera.height, camera.width
    o = origin.numpy()
    d = dirs.reshape(-1, 3).numpy()
    hit = intersector.intersects_first(np.broadcast_to(o, d.shape), d)  # [H*W], -1 on a miss
    hit = np.asarray(hit, dtype=np.int64)
    rows = np.flatnonzero(hit >= 0)
    # Exact float64 ray/plane distance for the triangle Embree picked.
    n = normals[hit[rows]]
    denom = np.einsum("ij,ij->i", n, d[rows])
    num = np.einsum("ij,ij->i", n, tri[hit[rows], 0] - o)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = num / denom
    # A ray grazing its triangle's plane (denom ~ 0) keeps a finite, non-negative distance.
    bad = ~np.isfinite(t) | (t < 0)
    if bad.any():
        t[bad] = np.einsum("ij,ij->i", tri[hit[rows[bad]]].mean(axis=1) - o, d[rows[bad]])
    scale = camera.ray_depth_scale(torch.float64).reshape(-1).numpy()
    depth = np.zeros(h * w)
    depth[rows] = t * scale[rows]
    normal = np.zeros((h * w, 3))
    normal[rows] = n
    mask = (hit >= 0).astype(np.float64)
    return RenderOutput(
        depth=torch.from_numpy(depth.reshape(h, w)).to(dtype),
        normal=torch.from_numpy(normal.reshape(h, w, 3)).to(dtype),
        mask=torch.from_numpy(mask.reshape(h, w)).to(dtype),
        triangle_id=torch.from_numpy(hit.reshape(h, w)),
    )


def raycast(
    vertices, faces, camera: Camera | Sequence[Camera], dtype: torch.dtype = torch.float32
) -> RenderOutput:
    """Ray-cast vertices [V,3] / faces [F,3] (torch or numpy, world units) from `camera` (or a list,
    giving a leading view axis [B,...]): depth [H,W] view depth (0 off the surface), normal
    [H,W,3] unit world face normal of the hit triangle (0 off), mask [H,W] 1/0, triangle_id [H,W]
    long (-1 off)."""
    v = _as_numpy(vertices, np.float64)
    f = _as_numpy(faces, np.int64)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"raycast: vertices must be [V,3], got {list(v.shape)}")
    if f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"raycast: faces must be [F,3], got {list(f.shape)}")
    if f.size and (f.min() < 0 or f.max() >= v.shape[0]):
        raise ValueError(f"raycast: face indices out of range [0, {v.shape[0]})")
    if not np.isfinite(v).all():
        raise ValueError("raycast: vertices hold NaN or infinite values")
    cams = [camera] if isinstance(camera, Camera) else list(camera)
    if not cams:
        raise ValueError("raycast: no camera given")
    tri = v[f]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    length = np.linalg.norm(cross, axis=1, keepdims=True)
    normals = np.divide(cross, length, out=np.zeros_like(cross), where=length > 0)
    if f.shape[0] == 0:
        outs = [_empty(c, dtype) for c in cams]
    else:
        inter = _intersector(v, f)
        outs = [_cast_one(inter, tri, normals, c, dtype) for c in cams]
    if isinstance(camera, Camera):
        return outs[0]
    return RenderOutput(
        depth=torch.stack([o.depth for o in outs]),
        normal=torch.stack([o.normal for o in outs]),
        mask=torch.stack([o.mask for o in outs]),
        triangle_id=torch.stack([o.triangle_id for o in outs]),
    )


def _empty(camera: Camera, dtype) -> RenderOutput:
    h, w = camera.height, camera.width
    return RenderOutput(
        depth=torch.zeros(h, w, dtype=dtype),
        normal=torch.zeros(h, w, 3, dtype=dtype),
        mask=torch.zeros(h, w, dtype=dtype),
        triangle_id=torch.full((h, w), -1, dtype=torch.long),
    )
