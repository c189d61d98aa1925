"""The differentiable half shared by every renderer here: attributes from the visible triangle.

Visibility (which triangle a pixel sees) is found elsewhere (z-buffer rasteriser, Embree) and is
piecewise constant, so it carries no gradient. Given it, everything else is recomputed from the
vertex positions with plain torch ops, so autograd reaches the vertices:

- depth: the pixel ray o + t d (d scaled to view depth 1, so t *is* the view depth) meets the
  plane of the triangle at t = <v0 - o, n> / <d, n>, n = (v1 - v0) x (v2 - v0);
- barycentrics (perspective-correct by construction): lambda_i = <d, e_i> / <d, n> with
  e_0 = (v1 - o) x (v2 - o), e_1 = (v2 - o) x (v0 - o), e_2 = (v0 - o) x (v1 - o);
- normals: unit face normal n / |n| in the mesh's winding (not flipped towards the camera), or
  smooth normals interpolated from area-weighted vertex normals;
- mask: coverage plus analytic edge antialiasing in the manner of nvdiffrast (see
  `antialiased_mask`), which is what gives a mask loss gradients at silhouettes.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch

from focusing.core.geometry.camera import Camera
from focusing.core.plugin_system.types import RenderOutput

__all__ = [
    "ViewRays",
    "as_camera_list",
    "view_rays",
    "edge_neighbours",
    "shade",
    "antialiased_mask",
    "check_mesh",
]


def as_camera_list(camera: "Camera | list[Camera]") -> tuple[list[Camera], bool]:
    """(cameras, batched): a single camera becomes a list of one; all must share one image size."""
    if isinstance(camera, Camera):
        return [camera], False
    cams = list(camera)
    if not cams:
        raise ValueError("render() needs at least one camera, got an empty list")
    for c in cams:
        if not isinstance(c, Camera):
            raise TypeError(f"expected Camera objects, got {type(c).__name__}")
    size = (cams[0].width, cams[0].height)
    for c in cams[1:]:
        if (c.width, c.height) != size:
            raise ValueError(
                f"batched cameras must share one image size, got {size} and {(c.width, c.height)}"
            )
    return cams, True


def check_mesh(vertices: torch.Tensor, faces: torch.Tensor) -> None:
    """Raise a clear error unless vertices is float [V,3] and faces long [F,3] indexing it."""
    if not torch.is_tensor(vertices) or not vertices.is_floating_point():
        raise TypeError("vertices must be a floating-point tensor [V,3]")
    if vertices.dim() != 2 or vertices.shape[1] != 3:
        raise ValueError(f"vertices must have shape [V,3], got {tuple(vertices.shape)}")
    if not torch.is_tensor(faces) or faces.dtype not in (torch.int64, torch.int32):
        raise TypeError("faces must be an integer tensor [F,3] (long)")
    if faces.dim() != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces must have shape [F,3], got {tuple(faces.shape)}")
    if faces.device != vertices.device:
        raise ValueError(f"faces on {faces.device} but vertices on {vertices.device}")
    if faces.numel() and (int(faces.min()) < 0 or int(faces.max()) >= vertices.shape[0]):
        raise ValueError(
            f"face indices must lie in [0, {vertices.shape[0]}), got "
            f"[{int(faces.min())}, {int(faces.max())}]"
        )
    if not bool(torch.isfinite(vertices.detach()).all()):
        raise ValueError("vertices contain NaN or inf")


@dataclass
class ViewRays:
    """Per-view ray data [B,...] in a given dtype/device: pixel (u, v) -> d = d0 + u du + v dv.

    origin [B,3] camera centres; d0, du, dv [B,3] world directions scaled to view depth 1
    (affine in the pixel coordinates u = column, v = row, centres at +0.5); near, far [B]."""

    origin: torch.Tensor
    d0: torch.Tensor
    du: torch.Tensor
    dv: torch.Tensor
    near: torch.Tensor
    far: torch.Tensor
    height: int
    width: int

    def directions(self, b: torch.Tensor, row: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
        """Ray directions [N,3] of pixels (view b, row, col) (long [N] each), view depth 1."""
        u = (col.to(self.d0.dtype) + 0.5)[:, None]
        v = (row.to(self.d0.dtype) + 0.5)[:, None]
        return self.d0[b] + u * self.du[b] + v * self.dv[b]


def view_rays(cameras: list[Camera], dtype: torch.dtype, device: torch.device) -> ViewRays:
    """Ray bases of every camera (computed in float64, cast to dtype on device)."""
    probe = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    ones = torch.ones(3, dtype=torch.float64)
    origin, d0, du, dv = [], [], [], []
    for cam in cameras:
        pos = cam.position.to(torch.float64)
        # unproject at view depth 1: the direction to a pixel is affine in (u, v) for a pinhole.
        pts = cam.unproject(probe, ones) - pos
        origin.append(pos)
        d0.append(pts[0])
        du.append(pts[1] - pts[0])
        dv.append(pts[2] - pts[0])

    def st(xs):
        return torch.stack(xs).to(device=device, dtype=dtype)

    return ViewRays(
        st(origin), st(d0), st(du), st(dv),
        torch.tensor([c.near for c in cameras], dtype=dtype, device=device),
        torch.tensor([c.far for c in cameras], dtype=dtype, device=device),
        cameras[0].height, cameras[0].width,
    )


# --- topology ---------------------------------------------------------------------------------
_TOPO_CACHE: list[tuple[weakref.ref, int, torch.Tensor]] = []


def edge_neighbours(faces: torch.Tensor) -> torch.Tensor:
    """For each face and local edge k (opposite vertex k): the face across it [F,3] (long).

    -1 marks a boundary edge, -2 a non-manifold edge (three or more faces); both count as
    silhouettes. The result is cached for the last few `faces` tensors (by identity and version,
    so an in-place edit recomputes it)."""
    for ref, version, nbr in _TOPO_CACHE:
        if ref() is faces and faces._version == version:
            return nbr
    nbr = _edge_neighbours(faces)
    _TOPO_CACHE.insert(0, (weakref.ref(faces), faces._version, nbr))
    del _TOPO_CACHE[4:]
    return nbr


def _edge_neighbours(faces: torch.Tensor) -> torch.Tensor:
    f = faces.long()
    n_faces = f.shape[0]
    if n_faces == 0:
        return torch.empty(0, 3, dtype=torch.long, device=f.device)
    # edge k of a face joins vertices (k+1)%3 and (k+2)%3
    a = f[:, [1, 2, 0]].reshape(-1)
    b = f[:, [2, 0, 1]].reshape(-1)
    lo, hi = torch.minimum(a, b), torch.maximum(a, b)
    key = lo * (int(f.max()) + 1) + hi
    key_sorted, order = torch.sort(key)
    _, inverse, counts = torch.unique_consecutive(
        key_sorted, return_inverse=True, return_counts=True
    )
    count_of = counts[inverse]  # per sorted half-edge
    out_sorted = torch.full_like(key_sorted, -1)
    out_sorted[count_of > 2] = -2
    # a manifold edge occupies two consecutive sorted slots; pair them
    start = torch.cumsum(counts, 0) - counts
    first = start[counts == 2]
    face_of = order // 3
    out_sorted[first] = face_of[first + 1]
    out_sorted[first + 1] = face_of[first]
    out = torch.empty_like(out_sorted)
    out[order] = out_sorted
    return out.view(n_faces, 3)


# --- shading ----------------------------------------------------------------------------------
def _vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals [V,3] (differentiable)."""
    tri = vertices[faces]
    fn = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
    vn = torch.zeros_like(vertices).index_add(0, faces.reshape(-1), fn.repeat_interleave(3, dim=0))
    return vn / vn.norm(dim=-1, keepdim=True).clamp_min(1e-20)


def shade(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    triangle_id: torch.Tensor,
    rays: ViewRays,
    smooth_normals: bool = False,
    antialias: bool = True,
) -> RenderOutput:
    """Differentiable maps [B,H,W(,3)] from per-pixel visible faces triangle_id [B,H,W] (-1 off)."""
    bsz, h, w = triangle_id.shape
    dtype, device = vertices.dtype, vertices.device
    flat_tid = triangle_id.reshape(-1)
    pix = torch.nonzero(flat_tid >= 0).squeeze(1)
    fid = flat_tid[pix]
    b = pix // (h * w)
    row = (pix // w) % h
    col = pix % w

    tri = vertices[faces[fid]]  # [P,3,3]
    o = rays.origin[b]
    d = rays.directions(b, row, col)
    v0, v1, v2 = tri[:, 0], tri[:, 1], tri[:, 2]
    n = torch.cross(v1 - v0, v2 - v0, dim=-1)
    dn = (d * n).sum(-1)
    depth_p = ((v0 - o) * n).sum(-1) / dn
    if smooth_normals:
        a, bb, c = v0 - o, v1 - o, v2 - o
        lam = torch.stack(
            [
                (d * torch.cross(bb, c, dim=-1)).sum(-1),
                (d * torch.cross(c, a, dim=-1)).sum(-1),
                (d * torch.cross(a, bb, dim=-1)).sum(-1),
            ],
            dim=-1,
        ) / dn[:, None]
        vn = _vertex_normals(vertices, faces)[faces[fid]]  # [P,3,3]
        normal_p = (lam[:, :, None] * vn).sum(1)
    else:
        normal_p = n
    normal_p = normal_p / normal_p.norm(dim=-1, keepdim=True).clamp_min(1e-20)

    n_pix = bsz * h * w
    depth = torch.zeros(n_pix, dtype=dtype, device=device).index_copy(0, pix, depth_p)
    normal = torch.zeros(n_pix, 3, dtype=dtype, device=device).index_copy(0, pix, normal_p)
    covered = (flat_tid >= 0).to(dtype).view(bsz, h, w)
    if antialias:
        mask = antialiased_mask(vertices, faces, triangle_id, rays)
    else:
        mask = covered
    return RenderOutput(
        depth.view(bsz, h, w), normal.view(bsz, h, w, 3), mask, triangle_id
    )


def antialiased_mask(
    vertices: torch.Tensor, faces: torch.Tensor, triangle_id: torch.Tensor, rays: ViewRays
) -> torch.Tensor:
    """Coverage [B,H,W] in [0,1] with analytic silhouette antialiasing (gradients to vertices).

    For each pair of 4-neighbour pixels of which one (p) sees triangle A and the other (q) sees
    background, find where the segment between their centres leaves A in screen space: the
    first edge line it crosses, at fraction alpha in [0, 1] from p. That is exact, because each
    unnormalised barycentric <d, e_i> is linear along the segment. If that edge is a silhouette
    (a boundary or non-manifold edge, or one whose neighbour faces the other way as seen from
    the camera), the pixel area beyond the midpoint is attributed as nvdiffrast does: q gains
    alpha - 1/2 of coverage when alpha > 1/2, p loses 1/2 - alpha when alpha < 1/2. The value
    is continuous in alpha and d(mask)/d(alpha) = 1, so moving the edge's two vertices moves
    the mask. Edges shared with a same-facing neighbour are interior and are skipped.
    """
    bsz, h, w = triangle_id.shape
    dtype, device = vertices.dtype, vertices.device
    cov = triangle_id >= 0
    mask = cov.to(dtype).reshape(-1)
    # pixel pairs (flat index of p, of q) across a coverage change, horizontally and vertically
    idx = torch.arange(bsz * h * w, device=device).view(bsz, h, w)
    ph = cov[:, :, :-1] != cov[:, :, 1:]
    pv = cov[:, :-1, :] != cov[:, 1:, :]
    left, right = idx[:, :, :-1][ph], idx[:, :, 1:][ph]
    up, down = idx[:, :-1, :][pv], idx[:, 1:, :][pv]
    first = torch.cat([left, up])
    second = torch.cat([right, down])
    first_cov = cov.reshape(-1)[first]
    p = torch.where(first_cov, first, second)
    q = torch.where(first_cov, second, first)
    if p.numel() == 0:
        return mask.view(bsz, h, w)

    fid = triangle_id.reshape(-1)[p]
    b = p // (h * w)
    d_p = rays.directions(b, (p // w) % h, p % w)
    d_q = rays.directions(b, (q // w) % h, q % w)
    o = rays.origin[b]
    tri = vertices[faces[fid]]
    a, bb, c = tri[:, 0] - o, tri[:, 1] - o, tri[:, 2] - o
    e = torch.stack(
        [torch.cross(bb, c, dim=-1), torch.cross(c, a, dim=-1), torch.cross(a, bb, dim=-1)], dim=1
    )  # [P,3 edges,3]
    lam_p = (e * d_p[:, None]).sum(-1)
    lam_q = (e * d_q[:, None]).sum(-1)
    # orient so that inside means lambda >= 0 (the sign of the barycentric sum at p)
    s = torch.sign(lam_p.sum(-1, keepdim=True).detach())
    lam_p, lam_q = lam_p * s, lam_q * s
    with torch.no_grad():
        leaves = (lam_q < 0) & (lam_p >= 0)
        frac = torch.where(
            leaves, lam_p / (lam_p - lam_q).clamp_min(1e-30), torch.full_like(lam_p, 2.0)
        )
        frac_min, edge = frac.min(-1)
        valid = frac_min <= 1.0
        # silhouette test on the crossed edge
        nbr = edge_neighbours(faces)[fid, edge]
        has_nbr = nbr >= 0
        facing_a = torch.sign((a * (torch.cross(bb - a, c - a, dim=-1))).sum(-1))
        ntri = vertices.detach()[faces[nbr.clamp_min(0)]]
        nn = torch.cross(ntri[:, 1] - ntri[:, 0], ntri[:, 2] - ntri[:, 0], dim=-1)
        facing_n = torch.sign(((ntri[:, 0] - o) * nn).sum(-1))
        silhouette = ~has_nbr | (facing_n != facing_a)
        keep = valid & silhouette
    if not bool(keep.any()):
        return mask.view(bsz, h, w)
    k = torch.nonzero(keep).squeeze(1)
    ek = edge[k]
    lp = lam_p[k].gather(1, ek[:, None]).squeeze(1)
    lq = lam_q[k].gather(1, ek[:, None]).squeeze(1)
    alpha = lp / (lp - lq)
    wgt = alpha - 0.5
    # alpha > 1/2: q gains alpha - 1/2; alpha < 1/2: p loses 1/2 - alpha (both equal wgt)
    target = torch.where(wgt.detach() > 0, q[k], p[k])
    mask = mask.index_add(0, target, wgt)
    return mask.clamp(0.0, 1.0).view(bsz, h, w)
