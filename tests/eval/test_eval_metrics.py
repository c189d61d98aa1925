"""Metrics of focusing.eval against brute force, analytic surfaces and sampling theory.

Notation: N samples per surface; distances in the ground truth's unit box.
Sampling theory used below (locally flat surface of area A, N uniform samples = a Poisson
process of density N/A): the distance r from a fixed point to the nearest sample has
P(r > t) = exp(-N pi t^2 / A), so E[r^2] = A / (pi N) and P(r < tau) = 1 - exp(-N pi tau^2 / A).
On a sphere, the angle theta to the nearest of M uniform directions has
P(theta > t) = (1 - (1 - cos t) / 2)^M ~ exp(-M (1 - cos t) / 2), so E[1 - cos theta] ~ 2 / M.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from meshdata import mesh_file
from focusing.core.geometry.mesh import Mesh
from focusing.core.geometry.meshio import load_mesh
from focusing.core.geometry.validation import MeshError
from focusing.core.geometry.sampling import sample_surface
from focusing.core.metrics import (
    RESULT_KEYS,
    chamfer_distance,
    evaluate,
    fscore,
    nearest_neighbours,
    normal_consistency,
    point_metrics,
)

# Margin on a sample mean whose relative standard deviation is ~1/sqrt(N) (< 1.5% here):
# the bounds below hold the mean within 50 % of its expectation, i.e. tens of sigmas.
STAT_MARGIN = 1.5


def _brute_nn(query: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Direct differences (no |a|^2 + |b|^2 - 2ab expansion): exact to float64 rounding.
    d = torch.cdist(torch.from_numpy(query), torch.from_numpy(ref),
                    compute_mode="donot_use_mm_for_euclid_dist")
    dist, idx = d.min(dim=1)
    return dist.numpy(), idx.numpy()


def _sphere_points(n: int, r: float, seed: int) -> np.ndarray:
    g = np.random.default_rng(seed).normal(size=(n, 3))
    return r * g / np.linalg.norm(g, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def fandisk() -> Mesh:
    return load_mesh(mesh_file("fandisk"))


@pytest.fixture(scope="module")
def bunny() -> Mesh:
    return load_mesh(mesh_file("bunny00"))


# ---------------------------------------------------------------- brute force, small sets


def test_nearest_neighbours_match_brute_force(fandisk, bunny):
    q, _ = sample_surface(fandisk, 1500, 1)
    ref, _ = sample_surface(bunny, 2000, 2)
    dist, idx = nearest_neighbours(q, ref)
    bdist, bidx = _brute_nn(q, ref)
    np.testing.assert_allclose(dist, bdist, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(idx, bidx)


def test_point_metrics_match_brute_force(fandisk):
    # A real prediction-like pair: fandisk against itself rotated 2 degrees (distinct normals).
    rot = trimesh.transformations.rotation_matrix(np.radians(2.0), [0.3, 1.0, 0.2])[:3, :3]
    pred = Mesh(fandisk.vertices @ rot.T, fandisk.faces)
    p, pn = sample_surface(pred, 1800, 3)
    g, gn = sample_surface(fandisk, 2200, 4)
    tau = 0.02
    d_pg, i_pg = _brute_nn(p, g)
    d_gp, i_gp = _brute_nn(g, p)
    prec, rec = np.mean(d_pg < tau), np.mean(d_gp < tau)
    want = {
        "chamfer_l2": np.mean(d_pg**2) + np.mean(d_gp**2),
        "chamfer_l1": np.mean(d_pg) + np.mean(d_gp),
        "precision": prec,
        "recall": rec,
        "fscore": 2 * prec * rec / (prec + rec),
        "normal_consistency": 0.5 * (np.mean(np.abs(np.sum(pn * gn[i_pg], 1)))
                                     + np.mean(np.abs(np.sum(gn * pn[i_gp], 1)))),
    }
    assert 0.1 < prec < 0.9 and 0.1 < rec < 0.9  # tau cuts through the distribution
    got = point_metrics(p, pn, g, gn, tau=tau)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-12), key
    assert chamfer_distance(p, g) == pytest.approx(want["chamfer_l2"], rel=1e-12)
    assert chamfer_distance(p, g, squared=False) == pytest.approx(want["chamfer_l1"], rel=1e-12)
    assert fscore(p, g, tau) == pytest.approx((want["fscore"], prec, rec), rel=1e-12)
    # Flipped normals must not matter: |cos|.
    assert normal_consistency(p, -pn, g, gn) == pytest.approx(want["normal_consistency"], rel=1e-12)


# ---------------------------------------------------------------- analytic: concentric spheres


def test_concentric_exact_spheres_chamfer_and_fscore():
    # Points exactly on spheres r1, r2: every distance is >= |r1 - r2|, and
    # d^2 = (r1 - r2)^2 + 2 r1 r2 (1 - cos theta) to the angularly nearest sample.
    r1, r2, n = 0.45, 0.40, 20000
    delta = r1 - r2
    p, g = _sphere_points(n, r1, 10), _sphere_points(n, r2, 11)
    cd = chamfer_distance(p, g)
    excess = 2 * (2 * r1 * r2 * 2.0 / n)  # both directions, E[1 - cos theta] = 2 / M
    assert cd >= 2 * delta**2
    assert (cd - 2 * delta**2) == pytest.approx(excess, rel=STAT_MARGIN - 1)
    # Per sample d <= delta + (d^2 - delta^2) / (2 delta) (sqrt is concave): an exact relation.
    l1 = chamfer_distance(p, g, squared=False)
    assert 2 * delta <= l1 <= 2 * delta + (cd - 2 * delta**2) / (2 * delta) + 1e-15
    # F-score: 0 below delta; 1 above the largest NN distance, which by a union bound over the
    # n queries exceeds t with probability <= n exp(-n (1 - cos t) / 2); take that as 1e-9.
    assert fscore(p, g, tau=delta * 0.999) == (0.0, 0.0, 0.0)
    one_minus_cos = 2 * np.log(n / 1e-9) / n
    tau_hi = np.sqrt(delta**2 + 2 * r1 * r2 * one_minus_cos)
    assert fscore(p, g, tau=tau_hi) == (1.0, 1.0, 1.0)
    # Radial normals: |cos theta| >= 1 - (1 - cos theta), mean excess ~ 2 / n.
    nc = normal_consistency(p, p / r1, g, g / r2)
    assert 1.0 - STAT_MARGIN * 2.0 / n <= nc <= 1.0


@pytest.mark.parametrize("pred_radius", [0.45, 0.56])
def test_concentric_icosphere_meshes(pred_radius):
    # gt: icosphere of radius 0.3 (its box is exactly [-0.3, 0.3]^3, so the gt box maps it to
    # radius 0.5); pred: radius pred_radius / 0.5 * 0.3 before normalisation.
    n = 20000
    gt_tm = trimesh.creation.icosphere(subdivisions=5, radius=0.3)
    gt = Mesh(gt_tm.vertices, gt_tm.faces)
    pred = Mesh(gt.vertices * (pred_radius / 0.5), gt.faces)
    np.testing.assert_allclose(gt.bounds, [[-0.3] * 3, [0.3] * 3], atol=1e-12)

    def radius_range(m: Mesh, scale: float) -> tuple[float, float]:
        # Inscribed facets: radii of surface points lie in [min face-plane distance, r].
        tri = m.vertices[m.faces] * scale
        nrm = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
        plane = np.abs(np.einsum("ij,ij->i", nrm, tri[:, 0]))
        return float(plane.min()), float(np.linalg.norm(tri, axis=2).max())

    ap, rp = radius_range(pred, 0.5 / 0.3)
    ag, rg = radius_range(gt, 0.5 / 0.3)
    gap_lo = max(ap - rg, ag - rp)  # the shells are disjoint
    gap_hi = max(abs(rp - ag), abs(ap - rg))
    assert gap_lo > 0

    res = evaluate(pred, gt, n_points=n, tau=gap_lo * 0.999, seed=5)
    cd = res["chamfer_l2"]
    sampling = 2 * (2 * rp * rg * 2.0 / n)
    assert 2 * gap_lo**2 <= cd <= 2 * gap_hi**2 + STAT_MARGIN * sampling
    # The faceting is tiny, so this is the textbook 2 (r1 - r2)^2 plus the sampling term. Error
    # budget: facet sag shifts the gap by ~1e-5 (2e-4 of CD); the sampling term (1 % of CD)
    # is known to a few % and its noise is ~1/sqrt(N): 2e-3 in all.
    assert cd == pytest.approx(2 * (pred_radius - 0.5) ** 2 + sampling, rel=2e-3)
    assert 2 * gap_lo <= res["chamfer_l1"] <= 2 * gap_hi + (cd - 2 * gap_lo**2) / (2 * gap_lo)
    assert (res["fscore"], res["precision"], res["recall"]) == (0.0, 0.0, 0.0)
    tau_hi = np.sqrt(gap_hi**2 + 2 * rp * rg * 2 * np.log(n / 1e-9) / n)
    res_hi = evaluate(pred, gt, n_points=n, tau=tau_hi, seed=5)
    assert (res_hi["fscore"], res_hi["precision"], res_hi["recall"]) == (1.0, 1.0, 1.0)
    assert res_hi["chamfer_l2"] == cd  # same seed, same samples


# ---------------------------------------------------------------- analytic: offset squares


def _square(z: float = 0.0, tilt_deg: float = 0.0) -> Mesh:
    v = np.array([[-0.5, -0.5, 0.0], [0.5, -0.5, 0.0], [0.5, 0.5, 0.0], [-0.5, 0.5, 0.0]])
    c, s = np.cos(np.radians(tilt_deg)), np.sin(np.radians(tilt_deg))
    v = v @ np.array([[1, 0, 0], [0, c, s], [0, -s, c]]) + [0.0, 0.0, z]
    return Mesh(v, np.array([[0, 1, 2], [0, 2, 3]]))


def test_offset_square_known_distances():
    # gt: unit square at z=0 (its box already is the unit box); pred: the same at z=h. With the
    # same seeds the samples have the same (x, y), so every NN distance is sqrt(h^2 + rho^2)
    # with rho the in-plane NN distance of the h=0 case: exact identities.
    n, h, seed = 10000, 0.004, 7
    gt = _square()
    flat = evaluate(_square(0.0), gt, n_points=n, tau=0.01, seed=seed)
    off = evaluate(_square(h), gt, n_points=n, tau=0.01, seed=seed)
    assert off["chamfer_l2"] == pytest.approx(flat["chamfer_l2"] + 2 * h**2, rel=1e-12)
    assert off["chamfer_l1"] >= 2 * h
    # In-plane Poisson NN: E[rho^2] = A / (pi N) per direction (A = 1), plus a boundary term of
    # relative size ~ perimeter * sqrt(A / (pi N)) / A = 4 * 0.0056 ~ 2 % (half-discs at edges).
    assert flat["chamfer_l2"] == pytest.approx(2 / (np.pi * n), rel=0.08)
    # F-score: strict d < tau; nobody is closer than h.
    assert evaluate(_square(h), gt, n_points=n, tau=h, seed=seed)["fscore"] == 0.0
    # d < tau  <=>  rho < sqrt(tau^2 - h^2): the offset F-score is a flat one at a smaller tau.
    tau = 0.006
    off_f = evaluate(_square(h), gt, n_points=n, tau=tau, seed=seed)
    flat_f = evaluate(_square(0.0), gt, n_points=n, tau=np.sqrt(tau**2 - h**2), seed=seed)
    assert 0.2 < off_f["fscore"] < 0.9
    assert (off_f["precision"], off_f["recall"]) == pytest.approx(
        (flat_f["precision"], flat_f["recall"]), abs=2.0 / n)  # rounding at the threshold
    # And the flat one follows the Poisson law P(rho < t) = 1 - exp(-N pi t^2 / A).
    t2 = tau**2 - h**2
    assert flat_f["recall"] == pytest.approx(1 - np.exp(-n * np.pi * t2), abs=0.03)


@pytest.mark.parametrize("tilt", [0.0, 30.0, 60.0, 90.0, 150.0])
def test_normal_consistency_of_tilted_planes_is_abs_cos(tilt):
    # Each mesh is planar, so every NN normal is the other plane's normal: NC = |cos tilt|.
    res = evaluate(_square(tilt_deg=tilt), _square(), n_points=3000, seed=1)
    assert res["normal_consistency"] == pytest.approx(abs(np.cos(np.radians(tilt))), abs=1e-12)


# ---------------------------------------------------------------- protocol on real meshes


def test_sampling_floor_follows_poisson_law(fandisk):
    # gt vs its own resample: CD L2 ~ 2 A / (pi N), F ~ 1 - exp(-N pi tau^2 / A). The crease
    # lines of this CAD part shorten a few NN distances (~1 % here); sampling noise ~1.5 %.
    n, tau = 20000, 0.01
    area = float(fandisk.face_areas.sum())
    res = evaluate(fandisk, fandisk, n_points=n, tau=tau, seed=3)
    assert res["floor_chamfer_l2"] == pytest.approx(2 * area / (np.pi * n), rel=0.06)
    assert res["floor_fscore"] == pytest.approx(1 - np.exp(-n * np.pi * tau**2 / area), rel=0.02)
    # pred == gt is, by construction, another draw of the same floor.
    assert res["chamfer_l2"] == pytest.approx(res["floor_chamfer_l2"], rel=0.06)
    assert res["fscore"] == pytest.approx(res["floor_fscore"], rel=0.02)
    # E[r] = sqrt(A / N) / 2 per direction.
    assert res["chamfer_l1"] == pytest.approx(2 * 0.5 * np.sqrt(area / n), rel=0.06)


def test_normalisation_is_by_the_ground_truth_box(fandisk, bunny):
    # A similarity applied to both meshes changes nothing (scale 2 keeps the samples bit-equal
    # up to the translation's rounding)...
    base = evaluate(bunny, fandisk, n_points=4000, tau=0.02, seed=2)
    moved = evaluate(Mesh(bunny.vertices * 2 + [0.25, -1.5, 3.0], bunny.faces),
                     Mesh(fandisk.vertices * 2 + [0.25, -1.5, 3.0], fandisk.faces),
                     n_points=4000, tau=0.02, seed=2)
    assert set(base) == set(RESULT_KEYS)
    for key in ("chamfer_l2", "chamfer_l1", "fscore", "normal_consistency", "floor_chamfer_l2"):
        assert moved[key] == pytest.approx(base[key], rel=1e-6), key
    # ...while scaling the prediction alone is measured in the gt's frame: a copy 1.5x larger
    # about the box centre is far off, not re-normalised onto the gt.
    big = evaluate(Mesh(fandisk.vertices * 1.5, fandisk.faces), fandisk, n_points=4000, seed=2)
    assert big["chamfer_l2"] > 50 * big["floor_chamfer_l2"]


def test_bad_inputs_raise(fandisk, tmp_path):
    bad = tmp_path / "empty.off"
    bad.write_text("OFF\n3 0 0\n0 0 0\n1 0 0\n0 1 0\n")
    with pytest.raises(MeshError, match="empty.off"):
        evaluate(bad, fandisk, n_points=100)
    with pytest.raises(ValueError, match="tau"):
        evaluate(fandisk, fandisk, n_points=100, tau=0.0)
    with pytest.raises(ValueError, match="n_points"):
        evaluate(fandisk, fandisk, n_points=0)
    with pytest.raises(ValueError, match="shape"):
        chamfer_distance(np.zeros((5, 2)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="NaN"):
        chamfer_distance(np.full((5, 3), np.nan), np.zeros((5, 3)))
