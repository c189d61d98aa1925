"""Embree ray casting (embreex): the toolkit's one ray caster and the non-differentiable oracle.

One ray per pixel centre (Camera.pixel_rays). Embree finds the first triangle hit (in float32,
in a frame shifted to the mesh's box corner and scaled to a box diagonal of 100, as trimesh does,
so that precision does not depend on where the mesh sits); `raycast` then recomputes the hit
distance in float64 as the ray/plane intersection of that triangle, so depths are exact to
float64 rounding for the triangle Embree picked. Both faces of a triangle are hit (no back-face
culling). With `clip=True` rays start on the camera's near plane and stop at its far plane, the
clipping of a rasteriser (the `embree` renderer of focusing-render takes its visibility from
here); by default hits are not clipped, as scenes are expected to lie inside the depth range,
as they do for orbit_cameras around the unit box.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from focusing.core.geometry.camera import Camera
from focusing.core.plugin_system.types import RenderOutput

__all__ = ["EmbreeScene", "embree_available", "first_hits", "raycast"]


def embree_available() -> tuple[bool, str]:
    """(True, "") if embreex imports, else (False, reason and install hint)."""
    try:
        import embreex  # noqa: F401
        import embreex.mesh_construction  # noqa: F401
        import embreex.rtcore_scene  # noqa: F401
    except Exception as exc:  # ImportError, or a wheel built for another CPU
        return False, f"embreex is not installed or not importable ({exc}); `pip install embreex`"
    return True, ""


def _as_numpy(x, dtype) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(np.asarray(x, dtype=dtype))


class EmbreeScene:
    """An Embree BVH of one triangle mesh, vertices [V,3] and faces [F,3] (world units)."""

    def __init__(self, vertices, faces) -> None:
        """Build the scene of vertices [V,3] / faces [F,3] (torch or numpy); needs embreex."""
        ok, reason = embree_available()
        if not ok:
            raise ImportError(f"ray casting needs Embree: {reason}")
        from embreex import rtcore_scene
        from embreex.mesh_construction import TriangleMesh

        v = _as_numpy(vertices, np.float64)
        self.origin = v.min(axis=0) if v.size else np.zeros(3)
        diag = float(np.linalg.norm(np.ptp(v, axis=0))) if v.size else 0.0
        self.scale = 100.0 / diag if diag > 0 else 1.0
        self._scene = rtcore_scene.EmbreeScene()
        TriangleMesh(
            self._scene,
            ((v - self.origin) * self.scale).astype(np.float32),
            _as_numpy(faces, np.int32),
        )

    def first_hit(self, origins: np.ndarray, dirs: np.ndarray, max_dist=None) -> np.ndarray:
        """Index [N] (int64, -1 on a miss) of the first face hit by rays origins [N,3] + t dirs
        [N,3] (unit), 0 <= t <= max_dist [N] (world units; None: unbounded)."""
        o = ((np.asarray(origins, dtype=np.float64) - self.origin) * self.scale).astype(np.float32)
        d = np.ascontiguousarray(dirs, dtype=np.float32)
        kwargs = {}
        if max_dist is not None:
            kwargs["dists"] = (np.asarray(max_dist, dtype=np.float64)
                               * self.scale).astype(np.float32)
        return np.asarray(self._scene.run(np.ascontiguousarray(o), d, **kwargs), dtype=np.int64)


def _camera_rays(camera: Camera, clip: bool):
    """Origins [H*W,3], unit directions [H*W,3] (float64 numpy) and max distances [H*W] (None
    unless clipped) of the pixel rays; clipped rays run from the near to the far plane."""
    origin, dirs = camera.pixel_rays(torch.float64)
    o = origin.numpy()
    d = dirs.reshape(-1, 3).numpy()
    if not clip:
        return np.broadcast_to(o, d.shape), d, None
    scale = camera.ray_depth_scale(torch.float64).reshape(-1).numpy()  # view depth = t * scale
    t_near, t_far = camera.near / scale, camera.far / scale
    return o + t_near[:, None] * d, d, t_far - t_near


def first_hits(scene: EmbreeScene, cameras: Sequence[Camera], clip: bool = True) -> torch.Tensor:
    """Face index [B,H,W] (long, -1 on a miss) seen at each pixel centre of each camera; with
    `clip`, only hits between the near and far planes count."""
    out = []
    for cam in cameras:
        origins, dirs, dists = _camera_rays(cam, clip)
        out.append(torch.from_numpy(scene.first_hit(origins, dirs, dists))
                   .view(cam.height, cam.width))
    return torch.stack(out)


def _cast_one(
    scene: EmbreeScene, tri: np.ndarray, normals: np.ndarray, camera: Camera, dtype, clip: bool
) -> RenderOutput:
    h, w = camera.height, camera.width
    origin, dirs = camera.pixel_rays(torch.float64)
    o = origin.numpy()
    d = dirs.reshape(-1, 3).numpy()
    hit = first_hits(scene, [camera], clip)[0].reshape(-1).numpy()  # [H*W], -1 on a miss
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
        triangle_id=torch.from_numpy(hit.reshape(h, w).copy()),
    )


def raycast(
    vertices,
    faces,
    camera: Camera | Sequence[Camera],
    dtype: torch.dtype = torch.float32,
    clip: bool = False,
) -> RenderOutput:
    """Ray-cast vertices [V,3] / faces [F,3] (torch or numpy, world units) from `camera` (or a list,
    giving a leading view axis [B,...]): depth [H,W] view depth (0 off the surface), normal
    [H,W,3] unit world face normal of the hit triangle (0 off), mask [H,W] 1/0, triangle_id [H,W]
    long (-1 off). `clip`: only hits between the cameras' near and far planes count."""
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
        scene = EmbreeScene(v, f)
        outs = [_cast_one(scene, tri, normals, c, dtype, clip) for c in cams]
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
