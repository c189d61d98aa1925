"""Exact surface voxelisation (triangle/box separating-axis test), dilation, voxel centres.

Grid convention (shared): at resolution R, voxel (i, j, k) is the CLOSED box
[-0.5 + i/R, -0.5 + (i+1)/R] x ... ; a triangle that only touches a voxel's face, edge or corner
counts as intersecting it, so a triangle lying on a voxel face marks the voxels on both sides.

Method: in grid units (x_grid = (x + 0.5) * R, voxel i = [i, i+1]) each triangle starts from the
<= 27 aligned blocks of size 2^k >= its extent that can touch it; each block is tested with the
13-axis separating-axis test (Akenine-Moller), and surviving blocks split into 8 children until
blocks are voxels. Work is therefore proportional to the surface area in voxels, not to the
triangles' bounding boxes (a long diagonal triangle at R = 1024 stays cheap). Blocks larger than a
voxel are tested slightly enlarged, so float rounding can never prune a voxel that touches the
triangle; the final voxel test uses the exact closed box. Parts of a mesh outside the unit box
are dropped (no voxel outside [0, R)^3 is returned).
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from focusing.core.geometry.mesh import Mesh

__all__ = ["surface_voxels", "dilate_voxels", "voxel_centers", "triangle_box_overlap"]

_BLOCK_SLACK = 1e-6  # voxels; enlargement of non-leaf blocks (rounding is ~1e-13 voxels)
_PAIR_CHUNK = 1 << 20  # (triangle, block) pairs tested at once: bounds memory to ~0.5 GB


def triangle_box_overlap(tri: np.ndarray, center: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Closed triangle/box intersection by the 13-axis separating-axis test.

    tri [N,3,3] corners, center [N,3], half [N] (cube half-widths), any consistent units;
    returns bool [N] (True when they intersect or touch). Degenerate triangles (segments,
    points) are handled: their zero axes never separate and the remaining axes suffice."""
    tri = np.asarray(tri, dtype=np.float64)
    center = np.asarray(center, dtype=np.float64)
    t = np.ascontiguousarray(tri.reshape(-1, 9).T)  # row 3*vertex + axis
    return _overlap_soa(t, np.ascontiguousarray(center.T), np.asarray(half, dtype=np.float64))


def _overlap_soa(t: np.ndarray, c: np.ndarray, h: np.ndarray) -> np.ndarray:
    """triangle_box_overlap on structure-of-arrays input: t [9,N], centres c [3,N], half h [N]."""
    # Numpy reductions over a length-3 axis are slow, so every quantity is a flat [N] array.
    v = [[t[3 * i + a] - c[a] for a in range(3)] for i in range(3)]  # v[vertex][axis]
    # Box face normals: the triangle's bounding box against the box.
    sep = np.zeros(h.shape, dtype=bool)
    for a in range(3):
        lo = np.minimum(np.minimum(v[0][a], v[1][a]), v[2][a])
        hi = np.maximum(np.maximum(v[0][a], v[1][a]), v[2][a])
        sep |= (lo > h) | (hi < -h)
    e = [[v[(i + 1) % 3][a] - v[i][a] for a in range(3)] for i in range(3)]  # edge i: v[i]->v[i+1]
    # Triangle plane; n = e0 x e2 is minus the face normal, which is fine under abs().
    nx = e[0][1] * e[2][2] - e[0][2] * e[2][1]
    ny = e[0][2] * e[2][0] - e[0][0] * e[2][2]
    nz = e[0][0] * e[2][1] - e[0][1] * e[2][0]
    p = nx * v[0][0] + ny * v[0][1] + nz * v[0][2]
    # Skip the plane axis of (near-)degenerate triangles: see _children_overlap.
    nn = nx * nx + ny * ny + nz * nz
    ee = sum(x * x for x in e[0]) * sum(x * x for x in e[2])
    sep |= (np.abs(p) > h * (np.abs(nx) + np.abs(ny) + np.abs(nz))) & (nn > 1e-20 * ee)
    # The 9 edge axes cost most: run them only on the pairs still undecided.
    keep = np.flatnonzero(~sep)
    if keep.size < sep.size:
        h = h[keep]
        v = [[x[keep] for x in row] for row in v]
        e = [[x[keep] for x in row] for row in e]
    sep2 = np.zeros(h.shape, dtype=bool)
    # Edge i x box axis: both ends of edge i project alike, so two projections per axis.
    for i in range(3):
        ex, ey, ez = e[i]
        a0, a1 = v[i], v[(i + 2) % 3]  # a vertex of edge i, and the opposite vertex
        for u, w, cu, cw in ((1, 2, ez, ey), (2, 0, ex, ez), (0, 1, ey, ex)):
            # axis = x^ x e: (0, -ez, ey); y^ x e: (ez, 0, -ex); z^ x e: (-ey, ex, 0)
            p0 = cw * a0[w] - cu * a0[u]
            p1 = cw * a1[w] - cu * a1[u]
            r = h * (np.abs(cu) + np.abs(cw))
            sep2 |= (np.minimum(p0, p1) > r) | (np.maximum(p0, p1) < -r)
    out = np.zeros(sep.shape, dtype=bool)
    out[keep] = ~sep2
    return out


def _unique(a: np.ndarray) -> np.ndarray:
    """Sorted unique int64 values (sort-based: numpy's hash-based unique is slower here)."""
    a = np.sort(a, kind="stable")  # timsort: fast on concatenated sorted runs
    if a.size:
        a = a[np.concatenate([[True], a[1:] != a[:-1]])]
    return a


def _start_blocks(tri: np.ndarray, resolution: int):
    """Per triangle, the aligned parent blocks whose children (aligned blocks of size
    S = 2^k >= the triangle's extent) cover every block that may touch it.

    Returns (triangle index [P], parent corner [3,P] int64 in voxels, parent size 2S [P])."""
    lo = tri.min(axis=1)
    hi = tri.max(axis=1)
    extent = np.maximum((hi - lo).max(axis=1), 1.0)
    k = np.ceil(np.log2(extent)).astype(np.int64)
    size = np.left_shift(np.int64(1), k)  # S [F]
    s = size[:, None].astype(np.float64)
    # Closed boxes: a block whose far face sits exactly at `lo` still touches the triangle.
    first = np.maximum(np.ceil(lo / s).astype(np.int64) - 1, 0)
    last = np.minimum(np.floor(hi / s).astype(np.int64), ((resolution - 1) // size)[:, None])
    # <= 3 consecutive size-S blocks per axis lie in <= 2 aligned parents of size 2S.
    first, last = first // 2, last // 2
    count = np.clip(last - first + 1, 0, None)  # [F,3], each <= 2
    total = count.prod(axis=1)
    tri_idx = np.repeat(np.arange(tri.shape[0]), total)
    if tri_idx.size == 0:
        return tri_idx, np.zeros((3, 0), np.int64), np.zeros(0, np.int64)
    offs = np.arange(tri_idx.size) - np.repeat(np.cumsum(total) - total, total)
    c = count[tri_idx]
    ix = offs // (c[:, 1] * c[:, 2])
    iy = (offs // c[:, 2]) % c[:, 1]
    iz = offs % c[:, 2]
    psize = 2 * size[tri_idx]
    corner = (first[tri_idx] + np.stack([ix, iy, iz], axis=1)) * psize[:, None]
    return tri_idx, np.ascontiguousarray(corner.T), psize


# Child c of a block: offset _CHILD[:, c] (0/1 per axis) in child sizes; _SIGN is the same as -1/+1.
_CHILD = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], dtype=np.int64).T
_SIGN = (2 * _CHILD - 1).astype(np.float64)  # [3,8]


def _children_overlap(w, hc, slack):
    """SAT of one triangle per parent against the parent's 8 children.

    w[vertex][axis] [P] triangle corners relative to the parent centre, hc [P] child half-size,
    slack [P] enlargement of the children; returns bool [P,2,2,2] indexed by the child's
    (x, y, z) half (True: the child touches the triangle).
    Child (bx, by, bz) is centred at hc * (sx, sy, sz) with s = 2b - 1. An axis with a zero
    component (box axes, edge x box-axis) sees only 2 or 4 distinct child centres, so its test
    runs on [P,2] or [P,2,2] arrays and is broadcast into [P,2,2,2]: little work per child."""
    hh = hc + slack
    sg = np.array([-1.0, 1.0])
    sep = np.zeros((hc.size, 2, 2, 2), dtype=bool)

    def outside(off, pmin, pmax, r):
        # separated iff pmin - off > r or pmax - off < -r (off: the child centre's projection)
        shape = (-1,) + (1,) * (off.ndim - 1)
        return (off < (pmin - r).reshape(shape)) | (off > (pmax + r).reshape(shape))

    for a in range(3):  # box face normals
        lo = np.minimum(np.minimum(w[0][a], w[1][a]), w[2][a])
        hi = np.maximum(np.maximum(w[0][a], w[1][a]), w[2][a])
        s2 = outside(hc[:, None] * sg, lo, hi, hh)  # [P,2]
        sep |= s2.reshape((-1,) + tuple(2 if b == a else 1 for b in range(3)))
    e = [[w[(i + 1) % 3][a] - w[i][a] for a in range(3)] for i in range(3)]  # edge i: w[i]->w[i+1]
    # Triangle plane (e0 x e2 is minus the face normal; the sign does not matter).
    n = (
        e[0][1] * e[2][2] - e[0][2] * e[2][1],
        e[0][2] * e[2][0] - e[0][0] * e[2][2],
        e[0][0] * e[2][1] - e[0][1] * e[2][0],
    )
    p = n[0] * w[0][0] + n[1] * w[0][1] + n[2] * w[0][2]
    off = hc[:, None, None, None] * (
        n[0][:, None, None, None] * sg[:, None, None]
        + n[1][:, None, None, None] * sg[None, :, None]
        + n[2][:, None, None, None] * sg[None, None, :]
    )
    plane_sep = outside(off, p, p, hh * (np.abs(n[0]) + np.abs(n[1]) + np.abs(n[2])))
    # A (near-)degenerate triangle's normal is rounding noise pointing anywhere: skip that axis
    # (the other 12 suffice for a segment or a point; for a sliver this errs towards touching,
    # by at most its ~1e-10 relative thickness).
    nn = n[0] ** 2 + n[1] ** 2 + n[2] ** 2
    ee = sum(x * x for x in e[0]) * sum(x * x for x in e[2])
    sep |= plane_sep & (nn > 1e-20 * ee)[:, None, None, None]
    # Edge i x box axis k: x^ x e = (0, -ez, ey), y^ x e = (ez, 0, -ex), z^ x e = (-ey, ex, 0).
    for i in range(3):
        ex, ey, ez = e[i]
        a0, a1 = w[i], w[(i + 2) % 3]  # a vertex of edge i (both ends project alike), the third
        for k, (u, v, cu, cv) in enumerate(((1, 2, -ez, ey), (0, 2, ez, -ex), (0, 1, -ey, ex))):
            # axis has components cu on axis u and cv on axis v (u < v), 0 on axis k
            p0 = cu * a0[u] + cv * a0[v]
            p1 = cu * a1[u] + cv * a1[v]
            off = hc[:, None, None] * (
                cu[:, None, None] * sg[:, None] + cv[:, None, None] * sg[None, :]
            )
            r = hh * (np.abs(cu) + np.abs(cv))
            s4 = outside(off, np.minimum(p0, p1), np.maximum(p0, p1), r)
            shape = [-1, 2, 2, 2]
            shape[k + 1] = 1
            sep |= s4.reshape(shape)
    return ~sep


def _descend(tsoa: np.ndarray, tri_idx, corner, size, resolution: int) -> np.ndarray:
    """Refine (triangle, parent block) items down to voxels; tsoa [9,F] triangle corners in grid
    units, corner [3,P], size [P] >= 2; returns sorted unique keys (i*R + j)*R + k of the hits."""
    keys = []
    stack = [(tri_idx, corner, size)]
    chunk = _PAIR_CHUNK // 8
    while stack:
        t_idx, c, s = stack.pop()
        if t_idx.size > chunk:  # split big work lists so memory stays bounded
            for a in range(0, t_idx.size, chunk):
                stack.append((t_idx[a : a + chunk], c[:, a : a + chunk], s[a : a + chunk]))
            continue
        cs = s // 2  # child size
        centre = c + s * 0.5
        w = [[tsoa[3 * i + a, t_idx] - centre[a] for a in range(3)] for i in range(3)]
        leaf = cs == 1
        hit = _children_overlap(w, cs * 0.5, np.where(leaf, 0.0, _BLOCK_SLACK)).reshape(-1, 8)
        child = c[:, :, None] + _CHILD[:, None, :] * cs[None, :, None]  # [3,P,8]
        hit &= (child < resolution).all(axis=0)  # R need not be a power of two
        done = hit & leaf[:, None]
        if done.any():
            v = child[:, done]
            keys.append(_unique((v[0] * resolution + v[1]) * resolution + v[2]))
        split = hit & ~leaf[:, None]
        if split.any():
            pi = np.nonzero(split)[0]
            stack.append((t_idx[pi], child[:, split], cs[pi]))
    if not keys:
        return np.zeros(0, np.int64)
    return _unique(np.concatenate(keys))


def surface_voxels(
    mesh: Mesh | tuple, resolution: int, face_chunk: int = 8192, progress: bool = False
) -> torch.Tensor:
    """Every voxel (i, j, k) of the R^3 grid over [-0.5, 0.5]^3 that a triangle intersects or
    touches (closed boxes): LongTensor [K,3], unique, sorted lexicographically."""
    if isinstance(mesh, Mesh):
        verts, faces = mesh.vertices, mesh.faces
    else:
        verts, faces = mesh
        verts = verts.detach().cpu().numpy() if isinstance(verts, torch.Tensor) else verts
        faces = faces.detach().cpu().numpy() if isinstance(faces, torch.Tensor) else faces
    verts = np.asarray(verts, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    resolution = int(resolution)
    if resolution <= 0:
        raise ValueError(f"surface_voxels: resolution must be positive, got {resolution}")
    if resolution > 2**20:
        raise ValueError(f"surface_voxels: resolution {resolution} overflows the int64 voxel keys")
    if faces.ndim != 2 or faces.shape[1] != 3 or verts.ndim != 2 or verts.shape[1] != 3:
        raise ValueError(
            f"surface_voxels: need vertices [V,3] and faces [F,3], got {list(verts.shape)} "
            f"and {list(faces.shape)}"
        )
    if not np.isfinite(verts).all():
        raise ValueError("surface_voxels: vertices hold NaN or infinite values")
    if faces.size and (faces.min() < 0 or faces.max() >= len(verts)):
        raise ValueError(f"surface_voxels: face indices out of range [0, {len(verts)})")
    grid = (verts + 0.5) * resolution  # voxel i spans [i, i+1]
    keys = []
    starts = range(0, faces.shape[0], face_chunk)
    for a in tqdm(starts, desc=f"voxelise R={resolution}", disable=not progress, leave=False):
        tri = grid[faces[a : a + face_chunk]]
        t_idx, corner, size = _start_blocks(tri, resolution)
        tsoa = np.ascontiguousarray(tri.reshape(-1, 9).T)
        keys.append(_descend(tsoa, t_idx, corner, size, resolution))
    key = _unique(np.concatenate(keys)) if keys else np.zeros(0, np.int64)
    r2 = resolution * resolution
    coords = np.stack([key // r2, (key // resolution) % resolution, key % resolution], axis=1)
    return torch.from_numpy(coords.astype(np.int64))


def dilate_voxels(coords: torch.Tensor, resolution: int, radius: int = 1) -> torch.Tensor:
    """Voxels within Chebyshev distance `radius` of any voxel in coords [K,3] (long), clipped to
    [0, R)^3: LongTensor [M,3], unique, sorted lexicographically (TripoSF-style active set)."""
    coords = torch.as_tensor(coords, dtype=torch.long)
    if coords.ndim != 2 or coords.shape[1] != 3:
        raise ValueError(f"dilate_voxels: coords must be [K,3], got {list(coords.shape)}")
    if radius < 0:
        raise ValueError(f"dilate_voxels: radius must be >= 0, got {radius}")
    if coords.numel() and (coords.min() < 0 or coords.max() >= resolution):
        raise ValueError(f"dilate_voxels: coords outside the grid [0, {resolution})")
    # The Chebyshev ball is a box, so the dilation separates into three 1-D passes: about
    # 3 (2r+1) K candidates instead of (2r+1)^3 K.
    r2 = resolution * resolution
    key = coords.numpy().astype(np.int64)
    key = _unique((key[:, 0] * resolution + key[:, 1]) * resolution + key[:, 2])
    for stride in (r2, resolution, 1):
        pos = (key // stride) % resolution  # this axis's coordinate
        parts = []
        for o in range(-radius, radius + 1):
            ok = (pos + o >= 0) & (pos + o < resolution)
            parts.append(key[ok] + o * stride)
        key = _unique(np.concatenate(parts))
    out = np.stack([key // r2, (key // resolution) % resolution, key % resolution], axis=1)
    return torch.from_numpy(out)


def near_voxels(query: torch.Tensor, centres: torch.Tensor, radius: int) -> torch.Tensor:
    """Mask [Q] (bool) of the integer voxel coords query [Q,3] within Chebyshev distance `radius`
    (voxels) of any of centres [K,3]; all False when K = 0.

    A k-d tree of the centres (scipy, p = inf): O(Q log K), where dilating the centres by the
    radius and looking the query up would make (2 radius + 1)^2 K cells or more, millions for a
    scattered selection at latent 256."""
    from scipy.spatial import cKDTree

    query, centres = torch.as_tensor(query), torch.as_tensor(centres)
    if len(query) == 0 or len(centres) == 0:
        return torch.zeros(len(query), dtype=torch.bool)
    tree = cKDTree(centres.cpu().numpy().astype(np.float64))
    dist, _ = tree.query(query.cpu().numpy().astype(np.float64), k=1, p=np.inf,
                         distance_upper_bound=radius + 0.5)
    return torch.from_numpy(np.isfinite(dist))


def voxel_centers(
    coords: torch.Tensor, resolution: int, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """World-space centres [K,3] of voxels coords [K,3]: -0.5 + (i + 0.5) / R."""
    coords = torch.as_tensor(coords)
    return (-0.5 + (coords.to(torch.float64) + 0.5) / resolution).to(dtype)
