"""The `torch` and `embree` renderers: two ways to find visibility, one differentiable half.

Both take visibility (the face each pixel sees) from a non-differentiable pass and then call
`shading.shade`, which recomputes depth, normals and the antialiased mask from the vertices.
- `torch`: the vectorised z-buffer rasteriser of `raster.py`; pure PyTorch, CPU or GPU.
- `embree`: Embree ray casting (embreex) of every pixel's primary ray, from the near plane to
  the far plane (the same clipping as the rasteriser). On the CPU this is the fast default.
  The Embree scene (its BVH) is cached for the last vertices/faces tensors by identity and
  version, so re-rendering an unchanged mesh (ground-truth views) skips the rebuild, while
  an optimiser step (an in-place update bumps the version) or a new tensor rebuilds it.
"""

from __future__ import annotations

import weakref
from typing import ClassVar

import numpy as np
import torch

from focusing.core.geometry.camera import Camera
from focusing.core.rendering import Renderer, RenderOutput
from focusing.render.raster import rasterize
from focusing.render.shading import ViewRays, as_camera_list, check_mesh, shade, view_rays

__all__ = ["TorchRenderer", "EmbreeRenderer", "unbatch", "project"]


def project(camera: Camera, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """World points [N,3] -> (pixels [N,2] as (u=column, v=row), view depth [N])."""
    m = camera.full_matrix.to(points)
    clip = points @ m[:, :3].T + m[:, 3]
    ndc = clip[:, :2] / clip[:, 3:4]
    u = (ndc[:, 0] + 1.0) * 0.5 * camera.width
    v = (1.0 - ndc[:, 1]) * 0.5 * camera.height
    wv = camera.world_to_view.to(points)
    depth = -(points @ wv[2, :3] + wv[2, 3])
    return torch.stack([u, v], dim=-1), depth


def unbatch(out: RenderOutput, batched: bool) -> RenderOutput:
    """Drop the leading view axis of a one-view render when the caller passed one camera."""
    if batched:
        return out
    return RenderOutput(out.depth[0], out.normal[0], out.mask[0], out.triangle_id[0])


class _TwoPassRenderer(Renderer):
    """Visibility from `_visibility`, attributes from `shading.shade`."""

    def __init__(self, smooth_normals: bool = False, antialias: bool = True):
        self.smooth_normals = bool(smooth_normals)
        self.antialias = bool(antialias)

    def _visibility(self, vertices, faces, cameras: list[Camera], rays: ViewRays) -> torch.Tensor:
        raise NotImplementedError

    def render(
        self, vertices: torch.Tensor, faces: torch.Tensor, camera: "Camera | list[Camera]"
    ) -> RenderOutput:
        """Render vertices [V,3] (world units) and faces [F,3] (long); maps [H,W] or [B,H,W]."""
        check_mesh(vertices, faces)
        cameras, batched = as_camera_list(camera)
        faces = faces.long()
        rays = view_rays(cameras, vertices.dtype, vertices.device)
        tid = self._visibility(vertices, faces, cameras, rays)
        out = shade(vertices, faces, tid, rays, self.smooth_normals, self.antialias)
        return unbatch(out, batched)


class TorchRenderer(_TwoPassRenderer):
    """Pure-PyTorch renderer (CPU and GPU): z-buffer visibility + differentiable attributes."""

    name = "torch"
    devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda")

    def __init__(self, smooth_normals: bool = False, antialias: bool = True, budget: int = 1 << 21):
        super().__init__(smooth_normals, antialias)
        if budget <= 0:
            raise ValueError(f"budget must be positive, got {budget}")
        self.budget = int(budget)

    def _visibility(self, vertices, faces, cameras, rays):
        v = vertices.detach()
        projected = [project(cam, v) for cam in cameras]
        return rasterize(v, faces, rays, projected, self.budget)


class EmbreeRenderer(_TwoPassRenderer):
    """Embree ray-cast visibility (embreex, CPU) + the same differentiable attributes as `torch`."""

    name = "embree"
    # visibility runs on the CPU; the maps come back on the input's device
    devices: ClassVar[tuple[str, ...]] = ("cpu",)

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """True where embreex imports (pip install embreex; x86_64 wheels)."""
        try:
            import embreex.mesh_construction  # noqa: F401
            import embreex.rtcore_scene  # noqa: F401
        except Exception as exc:  # ImportError, or a wheel built for another CPU
            return False, f"embreex not importable ({exc}); pip install embreex"
        return True, ""

    def __init__(self, smooth_normals: bool = False, antialias: bool = True):
        super().__init__(smooth_normals, antialias)
        self._cache: tuple | None = None

    def _scene(self, vertices: torch.Tensor, faces: torch.Tensor):
        c = self._cache
        if (
            c is not None
            and c[0]() is vertices and c[1] == vertices._version
            and c[2]() is faces and c[3] == faces._version
        ):
            return c[4]
        from embreex import rtcore_scene
        from embreex.mesh_construction import TriangleMesh

        scene = rtcore_scene.EmbreeScene()
        TriangleMesh(
            scene,
            np.ascontiguousarray(vertices.detach().cpu().numpy(), dtype=np.float32),
            np.ascontiguousarray(faces.cpu().numpy(), dtype=np.int32),
        )
        self._cache = (
            weakref.ref(vertices), vertices._version, weakref.ref(faces), faces._version, scene
        )
        return scene

    def _visibility(self, vertices, faces, cameras, rays):
        bsz, h, w = len(cameras), rays.height, rays.width
        if faces.shape[0] == 0:
            return torch.full((bsz, h, w), -1, dtype=torch.long, device=vertices.device)
        scene = self._scene(vertices, faces)
        # rays start on the near plane and stop at the far plane (d has view depth 1);
        # float32 throughout, as Embree is
        r32 = view_rays(cameras, torch.float32, torch.device("cpu"))
        u = torch.arange(w, dtype=torch.float32) + 0.5
        v = torch.arange(h, dtype=torch.float32) + 0.5
        d = (
            (r32.d0[:, None, None] + v[None, :, None, None] * r32.dv[:, None, None])
            + u[None, None, :, None] * r32.du[:, None, None]
        )  # [B,H,W,3]
        origins = r32.origin[:, None, None] + r32.near[:, None, None, None] * d
        dists = (r32.far - r32.near)[:, None, None].expand(bsz, h, w)
        prim = scene.run(
            origins.reshape(-1, 3).contiguous().numpy(),
            d.reshape(-1, 3).contiguous().numpy(),
            dists=dists.reshape(-1).contiguous().numpy(),
        )
        tid = torch.from_numpy(np.asarray(prim, dtype=np.int64)).view(bsz, h, w)
        return tid.to(vertices.device)
