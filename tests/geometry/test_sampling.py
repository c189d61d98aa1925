"""Area-weighted surface sampling, checked statistically on a real mesh."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from focusing.core.geometry.mesh import Mesh
from focusing.core.geometry.meshio import load_mesh
from focusing.core.geometry.validation import MeshError
from focusing.core.geometry.sampling import sample_surface

from meshdata import mesh_file


@pytest.fixture(scope="module")
def fandisk():
    return load_mesh(mesh_file("fandisk"))


def test_area_weighting_chi_square(fandisk):
    n = 200_000
    pts, nrm, face = sample_surface(fandisk, n, seed=1, return_faces=True)
    assert pts.shape == (n, 3) and nrm.shape == (n, 3) and pts.dtype == np.float64
    tm = fandisk.to_trimesh()
    area = tm.area_faces  # trimesh's areas: independent of Mesh.face_areas
    # Group faces into 40 bins by area rank: each bin expects thousands of samples, and bins
    # of small and large faces differ most between right and wrong weightings.
    group = np.empty(len(area), dtype=np.int64)
    group[np.argsort(area, kind="stable")] = np.arange(len(area)) * 40 // len(area)
    observed = np.bincount(group[face], minlength=40)
    expected = n * np.bincount(group, weights=area, minlength=40) / area.sum()
    chi2, p = stats.chisquare(observed, expected)
    assert p > 1e-4, (chi2, p)
    # The test has power: per-face (unweighted) sampling would be rejected outright.
    uniform = n * np.bincount(group, minlength=40) / len(area)
    assert stats.chisquare(observed, uniform)[1] < 1e-12
    # Big faces vs small faces (area varies a lot on fandisk): samples follow area.
    big = area > np.median(area)
    assert abs(big[face].mean() - area[big].sum() / area.sum()) < 0.005


def test_points_on_their_faces_with_face_normals(fandisk):
    pts, nrm, face = sample_surface(fandisk, 20_000, seed=2, return_faces=True)
    tm = fandisk.to_trimesh()
    np.testing.assert_allclose(nrm, tm.face_normals[face], atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(nrm, axis=1), 1.0, atol=1e-12)
    # On the face: barycentric coordinates in [0, 1] and on the face's plane.
    bary = np.linalg.solve(
        np.stack([tm.triangles[face, 1] - tm.triangles[face, 0],
                  tm.triangles[face, 2] - tm.triangles[face, 0],
                  tm.face_normals[face]], axis=2),
        (pts - tm.triangles[face, 0])[:, :, None],
    )[:, :, 0]
    assert bary[:, :2].min() > -1e-9 and bary[:, :2].sum(axis=1).max() < 1 + 1e-9
    assert np.abs(bary[:, 2]).max() < 1e-12
    # Uniform inside each triangle: the first barycentric coordinate has density 2 (1 - x).
    ks = stats.kstest(bary[:, 0], lambda x: 1 - (1 - x) ** 2)
    assert ks.pvalue > 1e-4
    # Without faces the same seed gives the same points.
    p2, n2 = sample_surface(fandisk, 20_000, seed=2)
    assert np.array_equal(p2, pts) and np.array_equal(n2, nrm)
    assert not np.array_equal(sample_surface(fandisk, 100, seed=3)[0], pts[:100])


def test_degenerate_faces_never_sampled():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [2, 0, 0.0]])
    m = Mesh(v, np.array([[0, 1, 3], [0, 1, 2], [1, 3, 0]]))  # faces 0 and 2 have zero area
    _, nrm, face = sample_surface(m, 5000, seed=0, return_faces=True)
    assert (face == 1).all()
    np.testing.assert_allclose(nrm, np.broadcast_to([0, 0, 1.0], nrm.shape))
    with pytest.raises(MeshError, match="zero surface area"):
        sample_surface(Mesh(v, np.array([[0, 1, 3]])), 10, seed=0)
