"""The `nvdiffrast` renderer: the same interface on NVIDIA's nvdiffrast (CUDA only).

Pipeline: world vertices -> clip space with each camera's full_matrix (projection @ view,
OpenGL conventions, as nvdiffrast expects), `dr.rasterize` (instanced mode, pos [B,V,4]),
`dr.interpolate` of per-vertex view depth (clip w = -z_view for our perspective matrices;
nvdiffrast's perspective-correct interpolation makes it exact on planar triangles),
face normals gathered by triangle id (or smooth normals interpolated), and `dr.antialias` of
the coverage for silhouette gradients. nvdiffrast's row 0 is the bottom of the image (NDC
y = -1) while ours is the top, so every map is flipped along H. Clipping is nvdiffrast's own
(clip-space near/far planes), matching our near/far.

This file cannot run on a machine without CUDA; `available()` says why.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from focusing.core.geometry.camera import Camera
from focusing.core.plugin_system.base import Renderer
from focusing.core.plugin_system.types import RenderOutput
from focusing.render.renderers import unbatch
from focusing.render.shading import _vertex_normals, as_camera_list, check_mesh

__all__ = ["NvdiffrastRenderer"]


class NvdiffrastRenderer(Renderer):
    """nvdiffrast rasterize + interpolate + antialias on CUDA (differentiable wrt vertices)."""

    name = "nvdiffrast"
    devices: ClassVar[tuple[str, ...]] = ("cuda",)

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """True where nvdiffrast.torch imports and CUDA is present."""
        try:
            import nvdiffrast.torch  # noqa: F401
        except Exception:
            return False, "nvdiffrast not installed (not on PyPI; build from source with CUDA)"
        if not torch.cuda.is_available():
            return False, "CUDA not available"
        return True, ""

    def __init__(self, smooth_normals: bool = False, antialias: bool = True, device=None):
        self.smooth_normals = bool(smooth_normals)
        self.antialias = bool(antialias)
        self._device = device
        self._ctx = None
        self._topology: tuple | None = None  # (faces tensor, version, hash)

    def _context(self, device: torch.device):
        import nvdiffrast.torch as dr

        if self._ctx is None:
            self._ctx = dr.RasterizeCudaContext(device=self._device or device)
        return self._ctx

    def _topology_hash(self, tri: torch.Tensor, faces: torch.Tensor):
        import nvdiffrast.torch as dr

        t = self._topology
        if t is not None and t[0] is faces and t[1] == faces._version:
            return t[2]
        topo = dr.antialias_construct_topology_hash(tri)
        self._topology = (faces, faces._version, topo)
        return topo

    def render(
        self, vertices: torch.Tensor, faces: torch.Tensor, camera: "Camera | list[Camera]"
    ) -> RenderOutput:
        """Render vertices [V,3] (CUDA, world units) and faces [F,3]; maps [H,W] or [B,H,W]."""
        import nvdiffrast.torch as dr

        ok, why = self.available()
        if not ok:
            raise RuntimeError(f"nvdiffrast renderer unavailable: {why}")
        check_mesh(vertices, faces)
        if vertices.device.type != "cuda":
            raise ValueError(f"nvdiffrast renders CUDA tensors, got vertices on {vertices.device}")
        cameras, batched = as_camera_list(camera)
        h, w = cameras[0].height, cameras[0].width
        device = vertices.device
        out_dtype = vertices.dtype
        v32 = vertices.float()
        mvp = torch.stack([c.full_matrix for c in cameras]).to(device=device, dtype=torch.float32)
        v_h = torch.cat([v32, torch.ones_like(v32[:, :1])], dim=1)  # [V,4]
        pos = torch.einsum("bij,vj->bvi", mvp, v_h).contiguous()  # [B,V,4] clip space
        tri = faces.to(device=device, dtype=torch.int32).contiguous()
        rast, _ = dr.rasterize(self._context(device), pos, tri, resolution=[h, w], grad_db=False)
        tid = rast[..., 3].long() - 1  # nvdiffrast stores triangle id + 1, 0 = empty
        covered = tid >= 0
        cov_f = covered.float()

        # view depth is clip w for a perspective projection (row 3 of P is [0, 0, -1, 0])
        depth, _ = dr.interpolate(pos[..., 3:4].contiguous(), rast, tri)
        depth = depth[..., 0] * cov_f
        if self.smooth_normals:
            vn = _vertex_normals(v32, faces.long())
            normal, _ = dr.interpolate(vn[None].contiguous(), rast, tri)
            normal = normal / normal.norm(dim=-1, keepdim=True).clamp_min(1e-20)
        else:
            t3 = v32[faces.long()]
            fn = torch.cross(t3[:, 1] - t3[:, 0], t3[:, 2] - t3[:, 0], dim=-1)
            fn = fn / fn.norm(dim=-1, keepdim=True).clamp_min(1e-20)
            normal = fn[tid.clamp_min(0)]
        normal = normal * cov_f[..., None]
        if self.antialias:
            topo = self._topology_hash(tri, faces)
            mask = dr.antialias(cov_f[..., None].contiguous(), rast, pos, tri, topology_hash=topo)
            mask = mask[..., 0].clamp(0.0, 1.0)
        else:
            mask = cov_f
        # nvdiffrast row 0 = bottom (NDC y = -1); ours = top
        out = RenderOutput(
            depth.flip(1).to(out_dtype),
            normal.flip(1).to(out_dtype),
            mask.flip(1).to(out_dtype),
            tid.flip(1),
        )
        return unbatch(out, batched)
