"""mesh_signed_distance (libigl's AABB tree) against an independent float64 brute force.

The brute force below shares no code with geometry.distance or libigl: per point and face, the
projection onto the face's plane when it falls inside the face, else the nearest of the three
edge segments; the minimum over every face. The sign is checked against a brute-force winding
number on closed meshes, and against the nearest face's side on open ones.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from focusing.core.geometry.distance import mesh_signed_distance, nearest_faces
from focusing.core.geometry.mesh import Mesh, normalize_mesh
from focusing.core.geometry.meshio import load_mesh

from meshdata import CLOSED_MESHES, MESHES, OPEN_MESHES

EVAL_MESHES = sorted((MESHES.parent / "meshes-eval").glob("*.off"))


# ----------------------------------------------------------------------------- brute force
def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance [P,F] from points p [P,1,3] to segments a-b [1,F,3] (a point if a == b)."""
    ab = b - a
    den = (ab * ab).sum(-1)
    t = np.clip(((p - a) * ab).sum(-1) / np.where(den > 0, den, 1.0), 0.0, 1.0)
    return np.linalg.norm(p - (a + t[..., None] * ab), axis=-1)


def _point_triangle(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Distance [P,F] from points p [P,1,3] to triangles a, b, c [1|P,F,3] (broadcast)."""
    n = np.cross(b - a, c - a)
    nn = (n * n).sum(-1)
    h = ((p - a) * n).sum(-1) / np.where(nn > 0, nn, 1.0)
    q = p - h[..., None] * n  # projection onto the plane
    inside = nn > 0
    for u, w in ((a, b), (b, c), (c, a)):
        inside = inside & ((np.cross(w - u, q - u) * n).sum(-1) >= 0)
    plane = np.where(inside, np.abs(h) * np.sqrt(nn), np.inf)
    edges = np.minimum(_segment_distance(p, a, b), _segment_distance(p, b, c))
    return np.minimum(plane, np.minimum(edges, _segment_distance(p, c, a)))


def brute_distance(
    points: np.ndarray, v: np.ndarray, f: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Distance [P] float64 from points [P,3] to the mesh, over every face, and the face [P]."""
    a, b, c = (v[f[:, k]][None] for k in range(3))
    dist = np.empty(len(points))
    face = np.empty(len(points), dtype=np.int64)
    step = max(1, 2_000_000 // len(f))
    for s in range(0, len(points), step):
        d = _point_triangle(points[s : s + step, None, :], a, b, c)
        face[s : s + step] = d.argmin(1)
        dist[s : s + step] = d.min(1)
    return dist, face


def face_distance(
    points: np.ndarray, v: np.ndarray, f: np.ndarray, face: np.ndarray
) -> np.ndarray:
    """Distance [P] from each point [P,3] to its own face face[P] (brute-force formula)."""
    a, b, c = (v[f[face, k]][:, None] for k in range(3))
    return _point_triangle(points[:, None, :], a, b, c)[:, 0]


def winding_number(points: np.ndarray, v: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Generalised winding number [P] (Van Oosterom and Strackee's solid angle, summed)."""
    out = np.empty(len(points))
    step = max(1, 2_000_000 // len(f))
    for s in range(0, len(points), step):
        a, b, c = (v[f[:, k]][None] - points[s : s + step, None, :] for k in range(3))
        la, lb, lc = (np.linalg.norm(x, axis=-1) for x in (a, b, c))
        num = (a * np.cross(b, c)).sum(-1)
        den = la * lb * lc + (a * b).sum(-1) * lc + (a * c).sum(-1) * lb + (b * c).sum(-1) * la
        out[s : s + step] = 2.0 * np.arctan2(num, den).sum(1) / (4 * np.pi)
    return out


# ----------------------------------------------------------------------------- meshes
def _blob(seed: int, subdivisions: int = 2) -> trimesh.Trimesh:
    """A closed star-shaped mesh: an icosphere with random radii, stretched and rotated."""
    rng = np.random.default_rng(seed)
    s = trimesh.creation.icosphere(subdivisions=subdivisions)
    v = s.vertices * rng.uniform(0.6, 1.0, size=(len(s.vertices), 1)) * 0.4
    rot, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    v = (v * rng.uniform(0.5, 1.0, size=3)) @ rot.T + rng.uniform(-0.05, 0.05, size=3)
    return trimesh.Trimesh(v, s.faces, process=False)


def _open_blob(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The blob with a quarter of its faces removed: holes, boundary edges, no inside."""
    m = _blob(seed)
    keep = np.random.default_rng(seed + 100).random(len(m.faces)) > 0.25
    return np.asarray(m.vertices), np.asarray(m.faces)[keep]


def _soup(seed: int, n: int = 60, sliver: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Random triangles in the box: open, intersecting, non-manifold; with sliver > 0 every
    third one is that thin (its third corner that far from its first edge's midpoint)."""
    rng = np.random.default_rng(seed)
    v = rng.uniform(-0.5, 0.5, size=(3 * n, 3))
    if sliver > 0:
        v[2::9] = 0.5 * (v[0::9] + v[1::9]) + rng.normal(scale=sliver, size=v[2::9].shape)
    return v, np.arange(3 * n).reshape(n, 3)


def _sheet(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """An open height field z = h(x, y) on a 12x12 grid (both sides of it are outside)."""
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(np.linspace(-0.4, 0.4, 12), np.linspace(-0.4, 0.4, 12), indexing="ij")
    v = np.stack([x, y, 0.05 * rng.normal(size=x.shape)], -1).reshape(-1, 3)
    i = np.arange(11)[:, None] * 12 + np.arange(11)[None]
    f = np.concatenate([np.stack([i, i + 12, i + 1], -1), np.stack([i + 1, i + 12, i + 13], -1)])
    return v, f.reshape(-1, 3)


def _queries(v: np.ndarray, f: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Points [~3n,3]: near the surface, in the box around it, on vertices and edge midpoints."""
    rng = np.random.default_rng(seed)
    tri = v[f[rng.integers(0, len(f), n)]]
    r = rng.random((n, 2))
    r[r.sum(1) > 1] = 1 - r[r.sum(1) > 1]
    on = tri[:, 0] + r[:, :1] * (tri[:, 1] - tri[:, 0]) + r[:, 1:] * (tri[:, 2] - tri[:, 0])
    near = on + rng.normal(scale=0.01, size=on.shape)
    lo, hi = v.min(0) - 0.1, v.max(0) + 0.1
    box = rng.uniform(lo, hi, size=(n, 3))
    k = min(n // 4, len(v))
    mid = 0.5 * (tri[:k, 0] + tri[:k, 1])
    feats = np.concatenate([v[rng.choice(len(v), k, replace=False)], mid])
    feats = feats + rng.normal(scale=1e-3, size=feats.shape)
    return np.concatenate([near, box, on[: n // 4], feats])


RANDOM = [("closed", s) for s in range(4)] + [("open", s) for s in range(4)]
RANDOM += [("soup", s) for s in range(3)] + [("sheet", s) for s in range(2)]


def _random_mesh(kind: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if kind == "closed":
        m = _blob(seed)
        return np.asarray(m.vertices), np.asarray(m.faces)
    return {"open": _open_blob, "soup": _soup, "sheet": _sheet}[kind](seed)


# ----------------------------------------------------------------------------- tests
@pytest.mark.parametrize("kind,seed", RANDOM)
def test_distance_matches_brute_force_on_random_meshes(kind, seed):
    v, f = _random_mesh(kind, seed)
    p = _queries(v, f, 400, seed)
    d = mesh_signed_distance((v, f), p)
    ref, ref_face = brute_distance(p, v, f)
    np.testing.assert_allclose(np.abs(d), ref, rtol=0, atol=1e-12)
    face, dist = nearest_faces((v, f), p)
    np.testing.assert_allclose(dist, ref, rtol=0, atol=1e-12)
    # The face given back is a nearest one (ties between faces sharing an edge are fine).
    np.testing.assert_allclose(face_distance(p, v, f, face), ref, rtol=0, atol=1e-12)
    # The bounded query (what surface_tsdf uses): exact below the bound, nothing beyond it.
    bound = float(np.median(ref))
    face_b, dist_b = nearest_faces((v, f), p, max_distance=bound)
    inner, outer = ref < bound - 1e-12, ref > bound + 1e-12
    assert inner.sum() > 100 and outer.sum() > 100
    np.testing.assert_allclose(dist_b[inner], ref[inner], rtol=0, atol=1e-12)
    np.testing.assert_allclose(face_distance(p[inner], v, f, face_b[inner]), ref[inner], atol=1e-12)
    assert np.all(face_b[outer] == -1) and np.all(dist_b[outer] == np.inf)
    if kind == "closed":
        # Exact for closed meshes: outside (+) where the winding number is 0, inside (-) at 1.
        w = winding_number(p, v, f)
        far = ref > 1e-9
        assert np.all(np.abs(w[far] - np.round(w[far])) < 1e-6)
        assert np.array_equal(d[far] < 0, np.round(w[far]) == 1)
    else:
        _check_face_side(p, d, v, f, ref, ref_face)


def test_slivers_are_as_exact_as_float64_allows():
    """Triangles 1e-4 thin: |d| within 1e-8 of the brute force (measured up to 4e-9 on points on
    the slivers, where libigl's own distance agrees with ours to 2e-16: the float64
    conditioning of a closest point on a sliver, not a missed face)."""
    for seed in range(2):
        v, f = _soup(seed, sliver=1e-4)
        p = _queries(v, f, 400, seed)
        ref, _ = brute_distance(p, v, f)
        face, dist = nearest_faces((v, f), p)
        np.testing.assert_allclose(np.abs(mesh_signed_distance((v, f), p)), ref, rtol=0, atol=1e-8)
        np.testing.assert_allclose(dist, ref, rtol=0, atol=1e-8)
        np.testing.assert_allclose(face_distance(p, v, f, face), ref, rtol=0, atol=1e-8)


def _check_face_side(p, d, v, f, ref, ref_face):
    """Where a point's nearest point is inside one face (away from its edges), by a margin over
    every other face, the sign is that face's side (open meshes: no inside to test)."""
    a, b, c = (v[f[ref_face, k]] for k in range(3))
    n = np.cross(b - a, c - a)
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    h = ((p - a) * n).sum(1)
    q = p - h[:, None] * n
    side = [(np.cross(w - u, q - u) * n).sum(1) / np.linalg.norm(w - u, axis=1)
            for u, w in ((a, b), (b, c), (c, a))]
    inside = np.all([x > 0 for x in side], axis=0)
    margin = np.min(np.abs(side), axis=0)
    others = np.full(len(p), np.inf)
    for i in range(len(p)):
        rest = np.delete(f, ref_face[i], axis=0)
        if len(rest):
            others[i] = brute_distance(p[i : i + 1], v, rest)[0][0]
    clear = inside & (margin > 1e-6) & (others > ref + 1e-6) & (np.abs(h) > 1e-9)
    assert clear.sum() > 0.2 * len(p)
    assert np.array_equal(d[clear] > 0, h[clear] > 0)


def _example(path):
    mesh, _, _ = normalize_mesh(load_mesh(path, normalize=False))
    return mesh


@pytest.mark.parametrize("path", sorted(MESHES.glob("*.off")) + EVAL_MESHES, ids=lambda p: p.stem)
def test_distance_matches_brute_force_on_the_example_meshes(path):
    mesh = _example(path)
    v, f = mesh.vertices, mesh.faces
    p = _queries(v, f, int(np.clip(300_000 // len(f), 8, 40)), seed=1)  # ~1 s per mesh
    d = mesh_signed_distance(mesh, p)
    ref, _ = brute_distance(p, v, f)
    np.testing.assert_allclose(np.abs(d), ref, rtol=0, atol=1e-12)
    if path.stem in CLOSED_MESHES:
        w = winding_number(p, v, f)
        clear = (ref > 1e-6) & (np.abs(w - np.round(w)) < 0.1)
        assert clear.mean() > 0.9
        assert np.array_equal(d[clear] < 0, np.round(w[clear]) >= 1)


def test_open_meshes_keep_the_nearest_face_side():
    """Open examples, a quarter voxel (at 64) off the surface along the face normal (not blade:
    a sheet thinner than that, so the offset crosses it)."""
    for name in [m for m in OPEN_MESHES if m != "blade"]:
        mesh = _example(MESHES / f"{name}.off")
        tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
        pts, fid = trimesh.sample.sample_surface(tm, 300, seed=2)
        off = 0.25 / 64 * tm.face_normals[fid]
        d_out, d_in = mesh_signed_distance(mesh, pts + off), mesh_signed_distance(mesh, pts - off)
        assert (d_out > 0).mean() > 0.97 and (d_in < 0).mean() > 0.97, name


def test_degenerate_faces_lose_ties_to_real_ones():
    """A zero-area face on a real face's edge must not decide the sign (it has no normal)."""
    m = _blob(7)
    v, f = np.asarray(m.vertices), np.asarray(m.faces)
    e = f[:40, :2]
    sliver = np.stack([e[:, 0], e[:, 1], e[:, 1]], 1)  # zero area, on real edges
    fd = np.concatenate([sliver, f])
    p = _queries(v, f, 300, seed=3)
    clean = mesh_signed_distance((v, f), p)
    np.testing.assert_allclose(mesh_signed_distance((v, fd), p), clean, rtol=0, atol=1e-12)
    for bound in (np.inf, 0.01):  # the full and the bounded query
        face, dist = nearest_faces((v, fd), p, max_distance=bound)
        _, ref = nearest_faces((v, f), p, max_distance=bound)
        hit = np.isfinite(ref)
        assert np.array_equal(np.isfinite(dist), hit) and np.all(face[hit] >= len(sliver))
        np.testing.assert_allclose(dist[hit], ref[hit], rtol=0, atol=1e-12)


def test_faces_hint_and_inputs():
    v, f = _random_mesh("closed", 1)
    p = _queries(v, f, 200, seed=4)
    face, _ = nearest_faces((v, f), p)
    direct = mesh_signed_distance((v, f), p)
    assert np.array_equal(mesh_signed_distance((v, f), p, faces=face), direct)
    assert np.array_equal(mesh_signed_distance((v, f), p, chunk=7), direct)
    as_tensor = mesh_signed_distance((torch.as_tensor(v), torch.as_tensor(f)), torch.as_tensor(p))
    assert np.array_equal(as_tensor, direct)
    # The old sampled search's knobs are accepted (sparseflex.field passes them) and ignored.
    assert np.array_equal(mesh_signed_distance(Mesh(v, f, None), p, samples_per_area=10.0), direct)
    assert mesh_signed_distance((v, f), np.zeros((0, 3))).shape == (0,)
    with pytest.raises(ValueError, match="points"):
        mesh_signed_distance((v, f), p[:, :2])
    with pytest.raises(ValueError, match="faces"):
        mesh_signed_distance((v, f), p, faces=face[:-1])
    with pytest.raises(ValueError, match="faces index"):
        mesh_signed_distance((v, f), p, faces=np.full(len(p), len(f)))
    with pytest.raises(ValueError, match="max_distance"):
        nearest_faces((v, f), p, max_distance=0.0)


# ----------------------------------------------------------------------------- TSDF target
def test_surface_tsdf_is_the_sign_rule_on_the_exact_distance():
    """surface_tsdf signs only the points that need it; the values are those of the rule applied
    to every point: |d| clamped to t, the fused sign where |fused| >= sign_band, else d's."""
    from focusing.core.geometry.camera import orbit_cameras
    from focusing.core.geometry.raycast import raycast
    from focusing.core.geometry.tsdf import fuse_view_tsdf, surface_tsdf

    for name in ["fandisk", "elephant-with-holes"]:
        mesh = _example(MESHES / f"{name}.off")
        rng = np.random.default_rng(0)
        world = torch.as_tensor(rng.uniform(-0.5, 0.5, size=(20000, 3)))
        cams = orbit_cameras(8, fov_y_deg=55.0, width=64, height=64)
        v, f = torch.as_tensor(mesh.vertices), torch.as_tensor(mesh.faces)
        depth = torch.stack([raycast(v, f, c, dtype=torch.float64).depth for c in cams])
        t, band = 0.05, 0.01
        out = surface_tsdf(mesh, world, cams, depth, t, sign_band=band)
        fused = fuse_view_tsdf(world, cams, depth, t)
        sd = torch.as_tensor(mesh_signed_distance(mesh, world.numpy()))
        sign = torch.where(fused.abs() >= band, fused.sign(), sd.sign())
        ref = torch.where(sign == 0, torch.ones_like(sign), sign) * sd.abs().clamp(max=t)
        assert ((sd.abs() < t).float().mean() > 0.05) and ((sd.abs() >= t).float().mean() > 0.05)
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-15)


def test_fused_tsdf_in_chunks_is_the_whole_array_fusion(monkeypatch):
    from focusing.core.geometry import tsdf
    from focusing.core.geometry.camera import orbit_cameras
    from focusing.core.geometry.raycast import raycast

    mesh = _example(MESHES / "couplingdown.off")
    cams = orbit_cameras(6, fov_y_deg=55.0, width=48, height=48)
    v, f = torch.as_tensor(mesh.vertices), torch.as_tensor(mesh.faces)
    depth = torch.stack([raycast(v, f, c, dtype=torch.float64).depth for c in cams])
    world = torch.as_tensor(np.random.default_rng(1).uniform(-0.5, 0.5, size=(5000, 3)))
    chunked = tsdf.fuse_view_tsdf(world, cams, depth, 0.03)
    monkeypatch.setattr(tsdf, "_CHUNK", 1 << 30)
    whole = tsdf.fuse_view_tsdf(world, cams, depth, 0.03)
    monkeypatch.setattr(tsdf, "_CHUNK", 333)
    assert torch.equal(chunked, whole)
    assert torch.equal(tsdf.fuse_view_tsdf(world, cams, depth, 0.03), whole)
    # and each view's values are view_tsdf's: one view fused is that view's value where valid
    val, ok = tsdf.view_tsdf(world, cams[0], depth[0], 0.03)
    one = tsdf.fuse_view_tsdf(world, cams[:1], depth[:1], 0.03, free_erosion=0)
    band = ok & (val.abs() < 0.03)
    assert torch.equal(one[band], val[band])
