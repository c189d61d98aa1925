"""A vectorised z-buffer rasteriser in pure PyTorch (visibility only, no gradients).

Each triangle's pixel bounding box is expanded into candidate pixels (triangles are processed
in chunks of at most `budget` candidates so memory stays bounded). For a pixel with ray
direction d (scaled to view depth 1) from the camera centre o, the three unnormalised
barycentrics lambda_i = <d, e_i> (e_0 = (v1-o) x (v2-o), cyclic) are affine in the pixel
coordinates (u, v), so each triangle keeps 3 x 3 coefficients plus the numerator of its depth
K = <v0 - o, n>; view depth is K / sum(lambda). Flipping each triangle's coefficients by
sign(K) makes "inside and in front of the camera" simply "all lambda_i >= 0".

The winner per pixel is the smallest key (float32 depth bits << 32 | face id) by
scatter_reduce amin: nearest depth, ties broken by the lower face id. Adjacent triangles
evaluate bit-identical (negated) coefficients on their shared edge, so no pixel falls through
a crack.

Near/far: hits with view depth outside [near, far] are discarded per pixel, which is exactly
what clipping the triangle against the two planes would give. Triangles entirely behind the
near plane or beyond the far plane are dropped; a triangle crossing the near plane (some
vertex behind it, possibly behind the camera) has no finite projected box, so it is tested
against every pixel (rare, and correct: the lambda test works in 3D, not on projected points).
"""

from __future__ import annotations

import torch

from focusing.render.shading import ViewRays

__all__ = ["rasterize"]

_KEY_EMPTY = torch.iinfo(torch.int64).max


@torch.no_grad()
def rasterize(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    rays: ViewRays,
    projected: list[tuple[torch.Tensor, torch.Tensor]],
    budget: int = 1 << 21,
) -> torch.Tensor:
    """Visible face per pixel [B,H,W] (long, -1 for background) by z-buffering.

    projected: per view (pixels [V,2] as (u, v), view depth [V]) of the vertices."""
    h, w = rays.height, rays.width
    bsz = rays.origin.shape[0]
    out = torch.full((bsz, h, w), -1, dtype=torch.long, device=vertices.device)
    if faces.shape[0] == 0:
        return out
    v = vertices.detach()
    faces = faces.long()
    for b in range(bsz):
        out[b] = _rasterize_view(v, faces, rays, b, projected[b], budget)
    return out


def _rasterize_view(v, faces, rays: ViewRays, b: int, proj, budget: int) -> torch.Tensor:
    h, w = rays.height, rays.width
    device = v.device
    near, far = float(rays.near[b]), float(rays.far[b])
    uv, z = proj
    uv, z = uv.to(v.dtype), z.to(v.dtype)
    zf = z[faces]  # [F,3]
    zmin, zmax = zf.min(1).values, zf.max(1).values
    alive = (zmax >= near) & (zmin <= far)
    crossing = zmin < near
    uvf = uv[faces]  # [F,3,2]; garbage for vertices behind the camera, fixed below
    lo = uvf.min(1).values
    hi = uvf.max(1).values
    # pixel c has its centre at c + 0.5: the box covers centres in [lo, hi]
    cmin = torch.ceil(lo[:, 0] - 0.5)
    cmax = torch.floor(hi[:, 0] - 0.5)
    rmin = torch.ceil(lo[:, 1] - 0.5)
    rmax = torch.floor(hi[:, 1] - 0.5)
    cmin = torch.where(crossing, torch.zeros_like(cmin), cmin).clamp(0, w - 1)
    rmin = torch.where(crossing, torch.zeros_like(rmin), rmin).clamp(0, h - 1)
    cmax = torch.where(crossing, torch.full_like(cmax, w - 1), cmax).clamp(-1, w - 1)
    rmax = torch.where(crossing, torch.full_like(rmax, h - 1), rmax).clamp(-1, h - 1)
    bw = (cmax - cmin + 1).clamp_min(0)
    bh = (rmax - rmin + 1).clamp_min(0)
    finite = torch.isfinite(bw) & torch.isfinite(bh)
    alive &= finite & (bw > 0) & (bh > 0)
    fids = torch.nonzero(alive).squeeze(1)
    keys = torch.full((h * w,), _KEY_EMPTY, dtype=torch.int64, device=device)
    if fids.numel() == 0:
        return torch.full((h, w), -1, dtype=torch.long, device=device)

    # per-face affine coefficients of the three barycentrics (inside test) and of 1 / depth
    o = rays.origin[b].to(v.dtype)
    tri = v[faces[fids]] - o  # [F',3,3]
    a, bb, c = tri[:, 0], tri[:, 1], tri[:, 2]
    e = torch.stack(
        [torch.cross(bb, c, dim=-1), torch.cross(c, a, dim=-1), torch.cross(a, bb, dim=-1)], dim=1
    )
    # n from edge vectors, not as e0 + e1 + e2, which cancels badly for small far triangles
    n = torch.cross(bb - a, c - a, dim=-1)
    k_num = (a * n).sum(-1)  # <v0 - o, n>: depth = k_num / <d, n>, so 1/depth is affine in (u, v)
    sgn = torch.where(k_num < 0, -1.0, 1.0).to(v.dtype)
    e = e * sgn[:, None, None]
    d0, du, dv = (t[b].to(v.dtype) for t in (rays.d0, rays.du, rays.dv))
    # lambda_i(u, v) = C_i + u A_i + v B_i at pixel centres u = col + 0.5, v = row + 0.5
    coef_a = e @ du  # [F',3]
    coef_b = e @ dv
    coef_c = e @ d0 + 0.5 * (coef_a + coef_b)
    # edge-on (plane through the camera) and degenerate faces cover no pixel area
    flat = k_num == 0
    inv_k = 1.0 / torch.where(flat, torch.ones_like(k_num), k_num)
    coef_c[flat] = -1.0
    coef_a[flat] = 0.0
    coef_b[flat] = 0.0
    z_a = (n @ du) * inv_k
    z_b = (n @ dv) * inv_k
    z_c = (n @ d0) * inv_k + 0.5 * (z_a + z_b)
    table = torch.cat(
        [coef_a, coef_b, coef_c, z_a[:, None], z_b[:, None], z_c[:, None]], dim=1
    ).float()  # [F',12]

    cmin_i, rmin_i = cmin[fids].long(), rmin[fids].long()
    bw_i, bh_i = bw[fids].long(), bh[fids].long()
    counts = bw_i * bh_i
    ends = torch.cumsum(counts, 0)
    # chunk boundaries so each chunk expands to at most `budget` candidate pixels
    n_total = int(ends[-1])
    cuts = torch.searchsorted(ends, torch.arange(budget, n_total + budget, budget, device=device))
    start = 0
    for stop in torch.unique_consecutive(cuts.clamp_max(fids.numel() - 1) + 1).tolist():
        if stop <= start:
            continue
        sl = slice(start, stop)
        cnt = counts[sl]
        total = int(cnt.sum())
        if total:
            local = torch.repeat_interleave(torch.arange(stop - start, device=device), cnt)
            offs = torch.cumsum(cnt, 0) - cnt
            k = torch.arange(total, device=device) - offs[local]
            bwl = bw_i[sl][local]
            col = cmin_i[sl][local] + k % bwl
            row = rmin_i[sl][local] + k // bwl
            t = table[sl][local]  # [N,12]
            uf = col.float()
            vf = row.float()
            inside = (t[:, 6] + uf * t[:, 0] + vf * t[:, 3]) >= 0
            inside &= (t[:, 7] + uf * t[:, 1] + vf * t[:, 4]) >= 0
            inside &= (t[:, 8] + uf * t[:, 2] + vf * t[:, 5]) >= 0
            sel = torch.nonzero(inside).squeeze(1)
            depth = 1.0 / (t[sel, 11] + uf[sel] * t[sel, 9] + vf[sel] * t[sel, 10])
            keep = (depth >= near) & (depth <= far)
            sel, depth = sel[keep], depth[keep]
            if sel.numel():
                dbits = depth.view(torch.int32).to(torch.int64)
                key = (dbits << 32) | fids[start + local[sel]]
                pix = row[sel] * w + col[sel]
                keys.scatter_reduce_(0, pix, key, reduce="amin")
        start = stop
    hit = keys != _KEY_EMPTY
    tid = torch.where(hit, keys & 0xFFFFFFFF, torch.full_like(keys, -1))
    return tid.view(h, w)
