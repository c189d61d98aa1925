"""The `torch` and `embree` renderers: two ways to find visibility, one differentiable half.

Both take visibility (the face each pixel sees) from a non-differentiable pass and then call
`shading.shade`, which recomputes depth, normals and the antialiased mask from the vertices.
- `torch`: the vectorised z-buffer rasteriser of `raster.py`; pure PyTorch, CPU or GPU.
- `embree`: core's Embree ray caster (`geometry.raycast.first_hits`, clip=True) on every
  pixel's primary ray, from the near plane to the far plane (the same clipping as the
  rasteriser). On the CPU this is the fast default.
  The Embree scene (its BVH) is cached for the last vertices/faces tensors by identity and
  version, so re-rendering an unchanged mesh (ground-truth views) skips the rebuild, while
  an optimiser step (an in-place update bumps the version) or a new tensor rebuilds it.
"""

from __future__ import annotations

import weakref
from typing import ClassVar

import torch

from focusing.core.geometry.camera import Camera
from focusing.core.geometry.raycast import EmbreeScene, embree_available, first_hits
from focusing.core.plugin_system.base import Renderer
from focusing.core.plugin_system.types import RenderOutput
from focusing.render.raster import rasterize
from focusing.render.shading import ViewRays, as_camera_list, check_mesh, shade, view_rays

__all__ = ["TorchRenderer", "EmbreeRenderer", "unbatch"]


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
        projected = [cam.project(v) for cam in cameras]
        return rasterize(v, faces, rays, projected, self.budget)


class EmbreeRenderer(_TwoPassRenderer):
    """Embree ray-cast visibility (embreex, CPU) + the same differentiable attributes as `torch`."""

    name = "embree"
    # visibility runs on the CPU; the maps come back on the input's device
    devices: ClassVar[tuple[str, ...]] = ("cpu",)

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """True where embreex imports (pip install embreex; x86_64 wheels)."""
        return embree_available()

    def __init__(self, smooth_normals: bool = False, antialias: bool = True):
        super().__init__(smooth_normals, antialias)
        self._cache: tuple | None = None

    def _scene(self, vertices: torch.Tensor, faces: torch.Tensor) -> EmbreeScene:
        c = self._cache
        if (
            c is not None
            and c[0]() is vertices and c[1] == vertices._version
            and c[2]() is faces and c[3] == faces._version
        ):
            return c[4]
        scene = EmbreeScene(vertices, faces)
        self._cache = (
            weakref.ref(vertices), vertices._version, weakref.ref(faces), faces._version, scene
        )
        return scene

    def _visibility(self, vertices, faces, cameras, rays):
        if faces.shape[0] == 0:
            return torch.full(
                (len(cameras), rays.height, rays.width), -1, dtype=torch.long,
                device=vertices.device,
            )
        return first_hits(self._scene(vertices, faces), cameras, clip=True).to(vertices.device)
