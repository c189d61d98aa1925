"""Signed distance from points to a triangle mesh, open meshes included.

General mesh geometry used by the TSDF training target (`geometry.tsdf.surface_tsdf`), by
SparseFlex (`sparseflex.field.field_from_mesh` builds corner SDFs from it) and by the tests that
measure extracted meshes against their source. Why a library: the nearest face comes from an
exact float64 AABB-tree query of a maintained library, libigl (pip wheel `libigl` 2.6). The
hand-written search it replaces took candidate faces from a cKDTree of dense surface samples
plus one ring, and could miss the nearest face (it did for 2 of mannequin-devil's 599k
output-128 target corners, by up to 8e-4). Measured on fandisk's 2.16M output-256 target
corners, one core: the old search 25 s; libigl's query 1.9 s, 0.95 s when bounded at the TSDF
truncation (nearest_faces(max_distance=...)). Why libigl and not fcpw: both wheels install,
but fcpw computes in float32 (its Vector is Eigen::Matrix<float>), libigl in float64.

The sign is unchanged: the angle-weighted pseudonormal (Baerentzen and Aanaes 2005) at the
closest point of the nearest face, edge or vertex, so it is exact for closed meshes and, for
open ones, follows the nearest face's orientation. Closest point, barycentrics and distance on
that face are computed here in float64 (Ericson's method) as before, so wherever the old search
found the nearest face the values are the old ones (bit for bit, but for ties between faces
that share the closest edge or vertex: 1e-16).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["mesh_signed_distance", "nearest_faces"]


def _mesh_arrays(mesh: Any) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(mesh, (tuple, list)) and len(mesh) == 2:
        v, f = mesh
    elif hasattr(mesh, "vertices") and hasattr(mesh, "faces"):
        v, f = mesh.vertices, mesh.faces
    else:
        raise TypeError(
            "expected a Mesh, a trimesh.Trimesh or (vertices, faces), "
            f"got {type(mesh).__name__}"
        )
    v = np.asarray(v.detach().cpu() if torch.is_tensor(v) else v, dtype=np.float64)
    f = np.asarray(f.detach().cpu() if torch.is_tensor(f) else f, dtype=np.int64)
    if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3 or len(f) == 0:
        raise ValueError(
            f"mesh needs vertices [V,3] and faces [F,3] with F > 0, got {v.shape} and {f.shape}"
        )
    if not np.isfinite(v).all():
        raise ValueError("mesh vertices contain NaN or inf")
    if f.min() < 0 or f.max() >= len(v):
        raise ValueError(f"mesh faces index outside [0, {len(v)})")
    return v, f


def _pseudonormals(v: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Face normals [F,3], edge pseudonormals per face edge [F,3,3] (edge k opposite corner k),
    angle-weighted vertex pseudonormals [V,3] (Baerentzen and Aanaes 2005)."""
    tri = v[f]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    norm = np.linalg.norm(cross, axis=1, keepdims=True)
    fn = np.divide(cross, norm, out=np.zeros_like(cross), where=norm > 0)
    # Edge k of a face is opposite its corner k: vertices (k+1, k+2).
    ea = f[:, [1, 2, 0]]
    eb = f[:, [2, 0, 1]]
    key = np.minimum(ea, eb) * len(v) + np.maximum(ea, eb)
    uniq, inv = np.unique(key.reshape(-1), return_inverse=True)
    acc = np.zeros((len(uniq), 3))
    np.add.at(acc, inv, np.repeat(fn, 3, axis=0))
    en = acc[inv].reshape(-1, 3, 3)
    vn = np.zeros_like(v)
    for k in range(3):
        a = tri[:, (k + 1) % 3] - tri[:, k]
        b = tri[:, (k + 2) % 3] - tri[:, k]
        lens = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        cosang = (a * b).sum(1) / np.maximum(lens, 1e-300)
        ang = np.arccos(np.clip(cosang, -1.0, 1.0))
        np.add.at(vn, f[:, k], fn * ang[:, None])
    return fn, en, vn


def _closest_on_triangles(
    p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Closest points [K,3] on triangles (a,b,c) [K,3] each to p [K,3], and barycentrics [K,3]."""
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = (ab * ap).sum(1), (ac * ap).sum(1)
    bp = p - b
    d3, d4 = (ab * bp).sum(1), (ac * bp).sum(1)
    cp = p - c
    d5, d6 = (ab * cp).sum(1), (ac * cp).sum(1)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    k = len(p)
    bary = np.zeros((k, 3))
    done = np.zeros(k, dtype=bool)

    def put(mask: np.ndarray, w: np.ndarray) -> None:
        m = mask & ~done
        bary[m] = w[m]
        done[m] = True

    one = np.ones(k)
    zero = np.zeros(k)
    put((d1 <= 0) & (d2 <= 0), np.stack([one, zero, zero], 1))  # vertex a
    put((d3 >= 0) & (d4 <= d3), np.stack([zero, one, zero], 1))  # vertex b
    put((d6 >= 0) & (d5 <= d6), np.stack([zero, zero, one], 1))  # vertex c
    with np.errstate(divide="ignore", invalid="ignore"):
        t = d1 / (d1 - d3)
        put((vc <= 0) & (d1 >= 0) & (d3 <= 0), np.stack([1 - t, t, zero], 1))  # edge ab
        t = d2 / (d2 - d6)
        put((vb <= 0) & (d2 >= 0) & (d6 <= 0), np.stack([1 - t, zero, t], 1))  # edge ac
        t = (d4 - d3) / ((d4 - d3) + (d5 - d6))
        bc = (va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0)
        put(bc, np.stack([zero, 1 - t, t], 1))  # edge bc
        den = va + vb + vc
        v_ = vb / den
        w_ = vc / den
        put(np.ones(k, dtype=bool), np.stack([1 - v_ - w_, v_, w_], 1))  # interior
    bary = np.nan_to_num(bary, nan=1.0 / 3.0)
    q = bary[:, :1] * a + bary[:, 1:2] * b + bary[:, 2:] * c
    return q, bary


def _points(points: np.ndarray | torch.Tensor) -> np.ndarray:
    p = np.asarray(points.detach().cpu() if torch.is_tensor(points) else points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"points must be [P,3], got {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError("points contain NaN or inf")
    return np.ascontiguousarray(p)


def _degenerate(tri: np.ndarray) -> np.ndarray:
    """Faces [F] bool with zero area (no normal) of triangles [F,3,3]."""
    return np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1) <= 0


def _query(v: np.ndarray, f: np.ndarray, p: np.ndarray, bound: float):
    """libigl's AABB query: squared distance [P] and face [P] (inf and -1 where not below bound)."""
    import igl

    if bound == np.inf:
        sqr, face, _ = igl.point_mesh_squared_distance(p, v, f)
        return sqr, face.astype(np.int64, copy=False)
    # The bounded query prunes every box farther than the bound: on fandisk's 2.16M output-256
    # corners with bound 2 voxels, 0.95 s on one core instead of 1.9 s for the full query.
    d, face, _, _ = igl.signed_distance(p, v, f, sign_type=igl.SIGNED_DISTANCE_TYPE_UNSIGNED,
                                        lower_bound=-bound, upper_bound=bound)
    miss = ~np.isfinite(d) | (face < 0) | (face >= len(f))
    return np.where(miss, np.inf, d * d), np.where(miss, -1, face).astype(np.int64, copy=False)


def _nearest(
    v: np.ndarray, f: np.ndarray, p: np.ndarray, bound: float = np.inf
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest face [P] int64 and distance [P] float64 of points p [P,3] (libigl's AABB tree);
    face -1 and distance inf where the distance is not below `bound`.

    Degenerate faces (no normal) lose ties against real ones within 1e-12, as they did in the
    sampled search: their closest point sits on an edge or vertex that a real face usually
    shares, and a real face carries a normal for the sign."""
    if len(p) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    sqr, face = _query(v, f, p, bound)
    dist = np.sqrt(sqr)
    bad = _degenerate(v[f])
    won = (face >= 0) & bad[np.maximum(face, 0)]
    if won.any() and not bad.all():
        good = np.flatnonzero(~bad)
        fg, pw = np.ascontiguousarray(f[good]), np.ascontiguousarray(p[won])
        sqr_g, face_g = _query(v, fg, pw, bound)
        swap = (face_g >= 0) & (np.sqrt(sqr_g) <= dist[won] + 1e-12)
        idx = np.flatnonzero(won)[swap]
        face[idx] = good[face_g[swap]]
        dist[idx] = np.sqrt(sqr_g[swap])
    return face, dist


def nearest_faces(
    mesh: Any, points: np.ndarray | torch.Tensor, max_distance: float = np.inf
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest face [P] int64 and exact unsigned distance [P] float64 (mesh units) of points [P,3].

    One AABB-tree query (libigl, float64). With a finite max_distance the query stops at it:
    points not nearer than that get face -1 and distance inf (far cheaper when most points are
    far). Hand the faces to mesh_signed_distance(faces=...) to sign only the points that need it.
    """
    if not max_distance > 0:
        raise ValueError(f"max_distance must be positive, got {max_distance}")
    v, f = _mesh_arrays(mesh)
    p = _points(points)
    return _nearest(np.ascontiguousarray(v), np.ascontiguousarray(f), p, float(max_distance))


def mesh_signed_distance(
    mesh: Any,
    points: np.ndarray | torch.Tensor,
    chunk: int = 1 << 16,
    *,
    faces: np.ndarray | None = None,
    candidates: int | None = None,
    samples_per_area: float | None = None,
    seed: int | None = None,
    refine: bool | None = None,
) -> np.ndarray:
    """Signed distance [P] float64 (mesh units) from points [P,3] to a triangle mesh [V,3]/[F,3].

    |d| is the exact float64 distance to the nearest face, found by libigl's AABB tree (or
    given: faces [P] from nearest_faces); the sign is that of the angle-weighted pseudonormal at
    the closest point (face, edge or vertex; Baerentzen and Aanaes 2005): exact for closed
    meshes and, for open ones, the nearest face's orientation (beyond an open boundary the zero
    set continues the surface). `chunk` points are signed at a time (cache-sized steps).
    candidates, samples_per_area, seed and refine tuned the old sampled candidate search: they
    are accepted so that callers keep working, and ignored. libigl queries on all cores unless
    the environment variable IGL_NUM_THREADS says otherwise.
    """
    del candidates, samples_per_area, seed, refine  # no sampling any more: exact by construction
    v, f = _mesh_arrays(mesh)
    v, f, p = np.ascontiguousarray(v), np.ascontiguousarray(f), _points(points)
    if faces is None:
        nearest, _ = _nearest(v, f, p)
    else:
        nearest = np.asarray(faces)
        if nearest.shape != (len(p),) or nearest.dtype.kind not in "iu":
            raise ValueError(f"faces must be [P] integers, got {nearest.shape} {nearest.dtype}")
        if len(p) and (nearest.min() < 0 or nearest.max() >= len(f)):
            raise ValueError(f"faces index outside [0, {len(f)})")
    if len(p) == 0:
        return np.zeros(0)
    tri = v[f]
    fn, en, vn = _pseudonormals(v, f)
    out = np.empty(len(p))
    tol = 1e-9
    for a in range(0, len(p), chunk):
        pc = p[a : a + chunk]
        face = nearest[a : a + chunk]
        q, b = _closest_on_triangles(pc, tri[face, 0], tri[face, 1], tri[face, 2])
        d = np.linalg.norm(pc - q, axis=1)
        nzero = (b <= tol).sum(1)
        normal = fn[face].copy()
        on_edge = nzero == 1
        if on_edge.any():
            normal[on_edge] = en[face[on_edge], b[on_edge].argmin(1)]
        on_vertex = nzero >= 2
        if on_vertex.any():
            normal[on_vertex] = vn[f[face[on_vertex], b[on_vertex].argmax(1)]]
        out[a : a + chunk] = np.where(((pc - q) * normal).sum(1) >= 0, 1.0, -1.0) * d
    return out
