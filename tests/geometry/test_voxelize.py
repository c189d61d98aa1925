"""Exact surface voxelisation against brute force by triangle clipping (an independent method)."""

from __future__ import annotations

from fractions import Fraction
from itertools import product

import numpy as np
import pytest
import torch
from scipy import ndimage

from focusing.core.geometry.mesh import Mesh
from focusing.core.geometry.meshio import load_mesh
from focusing.core.geometry.sampling import sample_surface
from focusing.core.geometry.voxelize import (
    dilate_voxels,
    surface_voxels,
    triangle_box_overlap,
    voxel_centers,
)

from meshdata import mesh_file


# --- brute force 1: Sutherland-Hodgman clipping of every triangle by every closed voxel ---------
def clip_nonempty(tri: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Vectorised over pairs: tri [N,3,3], box lo/hi [N,3] (grid units); True when clipping the
    triangle by the 6 closed half-spaces of the box leaves something."""
    n, cap = len(tri), 12
    poly = np.zeros((n, cap, 3))
    poly[:, :3] = tri
    count = np.full(n, 3)
    slots = np.arange(cap)
    for axis, sign, bound in [(a, s, b) for a in range(3) for s, b in ((1, lo), (-1, hi))]:
        nxt_idx = (slots[None, :] + 1) % np.maximum(count, 1)[:, None]
        nxt = np.take_along_axis(poly, nxt_idx[:, :, None], axis=1)
        dc = sign * (poly[:, :, axis] - bound[:, axis : axis + 1])
        dn = sign * (nxt[:, :, axis] - bound[:, axis : axis + 1])
        valid = slots[None, :] < count[:, None]
        keep_cur = valid & (dc >= 0)
        cross = valid & ((dc >= 0) != (dn >= 0))
        with np.errstate(invalid="ignore", divide="ignore"):
            t = dc / (dc - dn)
            inter = poly + t[:, :, None] * (nxt - poly)
        inter[:, :, axis] = np.where(cross, bound[:, axis : axis + 1], inter[:, :, axis])
        cand = np.stack([poly, inter], axis=2).reshape(n, 2 * cap, 3)
        emit = np.stack([keep_cur, cross], axis=2).reshape(n, 2 * cap)
        order = np.argsort(~emit, axis=1, kind="stable")[:, :cap]
        poly = np.take_along_axis(cand, order[:, :, None], axis=1)
        count = emit.sum(axis=1)
        assert count.max() <= cap
    return count > 0


def brute_force(verts: np.ndarray, faces: np.ndarray, r: int) -> set:
    """Every (triangle, voxel) pair of the R^3 grid clipped; the set of touched voxels."""
    grid = (verts + 0.5) * r
    vox = np.array(list(product(range(r), repeat=3)))
    out = set()
    for f0 in range(0, len(faces), max(1, 200_000 // len(vox))):  # chunks of pairs
        fs = faces[f0 : f0 + max(1, 200_000 // len(vox))]
        tri = np.repeat(grid[fs], len(vox), axis=0)
        lo = np.tile(vox, (len(fs), 1)).astype(np.float64)
        hit = clip_nonempty(tri, lo, lo + 1)
        out |= {tuple(v) for v in lo[hit].astype(int).tolist()}
    return out


# --- brute force 2: the same clipping in exact rational arithmetic (for exact ties) -------------
def exact_touches(tri, lo, hi) -> bool:
    poly = [tuple(Fraction(c) for c in p) for p in tri]
    for axis in range(3):
        for sign, b in ((1, Fraction(lo[axis])), (-1, Fraction(hi[axis]))):
            out = []
            for i, cur in enumerate(poly):
                nxt = poly[(i + 1) % len(poly)]
                dc, dn = sign * (cur[axis] - b), sign * (nxt[axis] - b)
                if dc >= 0:
                    out.append(cur)
                if (dc >= 0) != (dn >= 0):
                    t = dc / (dc - dn)
                    out.append(tuple(c + t * (d - c) for c, d in zip(cur, nxt)))
            poly = out
            if not poly:
                return False
    return True


def exact_voxels(tri_grid: np.ndarray, r: int) -> set:
    """Touched voxels of one triangle (grid units, exactly representable) by exact clipping; only
    voxels within 2 of the triangle's bounding box are tried (others are strictly apart)."""
    lo = np.maximum(np.floor(tri_grid.min(0)).astype(int) - 2, 0)
    hi = np.minimum(np.floor(tri_grid.max(0)).astype(int) + 2, r - 1)
    return {
        v
        for v in product(*[range(lo[a], hi[a] + 1) for a in range(3)])
        if exact_touches(tri_grid, v, [c + 1 for c in v])
    }


def as_set(coords: torch.Tensor) -> set:
    return {tuple(v) for v in coords.tolist()}


def test_random_triangles_match_clipping():
    rng = np.random.default_rng(0)
    for r in (8, 11, 16):
        # big, small, slivers (two nearly equal corners), and segment/point degenerates
        v = rng.uniform(-0.5, 0.5, size=(24, 3, 3))
        v[6:12] = v[6:12, :1] + rng.normal(scale=0.03, size=(6, 3, 3))
        v[12:18, 2] = v[12:18, 1] + rng.normal(scale=1e-7, size=(6, 3))
        v[18:21, 2] = 0.3 * v[18:21, 0] + 0.7 * v[18:21, 1]  # exactly-ish collinear
        v[21:24, 1:] = v[21:24, :1]  # points
        v = np.clip(v, -0.5, 0.5)
        faces = np.arange(72).reshape(24, 3)
        got = surface_voxels(Mesh(v.reshape(-1, 3), faces), r)
        assert as_set(got) == brute_force(v.reshape(-1, 3), faces, r), r
        assert torch.equal(got, torch.tensor(sorted(as_set(got))))  # unique, lexicographic


def _lattice_cases(r: int) -> list[np.ndarray]:
    """Triangles in grid units on voxel planes, edges and corners (exact ties)."""
    return [
        np.array([[2, 0.5, 0.5], [2, 5.5, 1.5], [2, 3.0, 6.0]]),  # in the plane x = 2
        np.array([[1, 1, 3], [5, 1, 3], [1, 5, 3]]),  # in z = 3, edges on voxel edges
        np.array([[3, 3, 3], [5, 3.5, 4], [4, 5, 3.5]]),  # one corner on a grid corner
        np.array([[1, 1, 1], [4, 4, 4], [6, 2, 5]]),  # edge along a diagonal through corners
        np.array([[0, 0, 0], [4, 4, 0], [4, 4, 4]]),  # in the plane x = y
        np.array([[2.5, 2.5, 2], [2.5, 2.5, 2], [2.5, 2.5, 2]]),  # a point on a voxel face
        np.array([[1, 2, 3], [5, 2, 3], [3, 2, 3]]),  # a segment on a voxel edge line
        np.array([[0, 0, 0], [r, 0, 0], [0, r, r]]),  # touching the grid's outer faces
        np.array([[7.75, 0.25, 1], [0.25, 7.75, 1], [4, 4, 1.0]]),  # a sliver on z = 1
    ]


def test_exact_ties_on_faces_edges_and_corners():
    r = 8
    for tri in _lattice_cases(r):
        verts = tri / r - 0.5  # exact: dyadic coordinates
        got = as_set(surface_voxels(Mesh(verts, np.array([[0, 1, 2]])), r))
        assert got == exact_voxels(tri, r), tri.tolist()
    # A triangle in x = 2 touches the layers on both sides.
    got = surface_voxels(Mesh(_lattice_cases(r)[0] / r - 0.5, np.array([[0, 1, 2]])), r)
    assert set(got[:, 0].tolist()) == {1, 2}


def test_single_pair_overlap_matches_clipping():
    rng = np.random.default_rng(5)
    n = 20_000
    tri = rng.uniform(-1.5, 1.5, size=(n, 3, 3))
    tri[: n // 4, 2] = 0.25 * tri[: n // 4, 0] + 0.75 * tri[: n // 4, 1]  # segments
    center = rng.uniform(-1, 1, size=(n, 3))
    half = rng.uniform(0.1, 1.0, size=n)
    got = triangle_box_overlap(tri, center, half)
    ref = clip_nonempty(tri, center - half[:, None], center + half[:, None])
    assert 0.2 < ref.mean() < 0.8
    assert np.array_equal(got, ref)


def test_large_triangle_and_non_power_of_two_grid():
    # One triangle spanning the box diagonally: the hierarchical descent starts from big blocks.
    v = np.array([[-0.5, -0.5, -0.45], [0.5, 0.31, -0.5], [0.2, -0.5, 0.5]])
    for r in (12, 20):
        got = as_set(surface_voxels(Mesh(v, np.array([[0, 1, 2]])), r))
        assert got == brute_force(v, np.array([[0, 1, 2]]), r)


def test_parts_outside_the_box_are_dropped():
    v = np.array([[-0.9, -0.1, 0.0], [0.9, -0.1, 0.0], [0.0, 0.7, 0.0]])
    got = surface_voxels(Mesh(v, np.array([[0, 1, 2]])), 10)
    assert got.min() >= 0 and got.max() < 10
    assert as_set(got) == brute_force(v, np.array([[0, 1, 2]]), 10)


@pytest.mark.parametrize("name,r", [("fandisk", 4), ("mannequin-devil", 3)])
def test_real_mesh_low_resolution(name, r):
    m = load_mesh(mesh_file(name))
    sub = m.faces[np.random.default_rng(1).choice(m.num_faces, 1000, replace=False)]
    got = surface_voxels(Mesh(m.vertices, sub), r)
    assert as_set(got) == brute_force(m.vertices, sub, r)


def test_real_mesh_contains_every_surface_point():
    m = load_mesh(mesh_file("armadillo"))
    r = 96
    got = surface_voxels(m, r)
    pts, _ = sample_surface(m, 100_000, seed=0)
    idx = np.minimum(np.floor((pts + 0.5) * r).astype(np.int64), r - 1)
    key = lambda c: (c[:, 0] * r + c[:, 1]) * r + c[:, 2]  # noqa: E731
    assert np.isin(key(idx), key(got.numpy())).all()
    # And no voxel is far from the surface: every centre within half a voxel diagonal (+ slack)
    # of some sample is too strict for sparse samples, so check distance to the mesh instead.
    centres = voxel_centers(got, r, dtype=torch.float64).numpy()
    sel = np.random.default_rng(0).choice(len(centres), 3000, replace=False)
    _, dist, _ = m.to_trimesh().nearest.on_surface(centres[sel])
    assert dist.max() <= np.sqrt(3) / 2 / r + 1e-12


def test_dilate_matches_binary_dilation():
    m = load_mesh(mesh_file("couplingdown"))
    r = 24
    vox = surface_voxels(m, r)
    dense = np.zeros((r, r, r), bool)
    dense[tuple(vox.T.numpy())] = True
    for radius in (1, 2):
        got = dilate_voxels(vox, r, radius)
        ref = ndimage.binary_dilation(dense, structure=np.ones((2 * radius + 1,) * 3, bool))
        assert as_set(got) == {tuple(v) for v in np.argwhere(ref).tolist()}
        assert torch.equal(got, torch.tensor(np.argwhere(ref)))  # argwhere is lexicographic
    # Clipping at the grid border.
    corner = dilate_voxels(torch.tensor([[0, 0, r - 1]]), r)
    assert len(corner) == 8 and corner.min() >= 0 and corner.max() < r
    with pytest.raises(ValueError, match="outside the grid"):
        dilate_voxels(torch.tensor([[0, 0, r]]), r)


def test_voxel_centers_follow_the_grid_convention():
    r = 7
    coords = torch.tensor([[0, 0, 0], [6, 3, 1]])
    c = voxel_centers(coords, r, dtype=torch.float64)
    lo = -0.5 + coords.double() / r
    assert torch.allclose(c, lo + 0.5 / r)
    assert voxel_centers(coords, r).dtype == torch.float32
