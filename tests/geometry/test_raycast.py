"""The Embree ray-cast oracle against analytic planes and spheres, with rays built independently."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
import trimesh

from focusing.core.geometry.camera import Camera, orbit_cameras
from focusing.core.geometry.meshio import load_mesh
from focusing.core.geometry.raycast import raycast

from meshdata import mesh_file


def independent_rays(cam: Camera):
    """Per pixel centre: origin [3] and unit direction [H*W,3], from the inverse of the full
    projection matrix (two NDC depths unprojected), not from Camera's ray code."""
    h, w = cam.height, cam.width
    v, u = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
    x = (u / w * 2 - 1).ravel()
    y = (1 - v / h * 2).ravel()
    inv = np.linalg.inv(cam.full_matrix.numpy())
    pts = []
    for z in (-1.0, 1.0):
        clip = np.stack([x, y, np.full_like(x, z), np.ones_like(x)], axis=1) @ inv.T
        pts.append(clip[:, :3] / clip[:, 3:])
    d = pts[1] - pts[0]
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    origin = np.linalg.inv(cam.world_to_view.numpy())[:3, 3]
    return origin, d


def view_depth(cam: Camera, pts: np.ndarray) -> np.ndarray:
    m = cam.world_to_view.numpy()
    return -(pts @ m[2, :3] + m[2, 3])


def test_plane_exact():
    quad = np.array([[-1.0, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]])
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    cam = Camera.looking_at((0.3, 0.4, 2.0), (0.05, -0.1, 0.0), fov_y_deg=70, width=48, height=40)
    out = raycast(torch.tensor(quad), torch.tensor(faces), cam, dtype=torch.float64)
    o, d = independent_rays(cam)
    t = -o[2] / d[:, 2]
    hit = o + t[:, None] * d
    inside = (np.abs(hit[:, :2]) < 1).all(axis=1) & (t > 0)
    # Keep away from the square's border and its diagonal, where the pixel could go either way.
    clear = ((np.abs(np.abs(hit[:, :2]) - 1) > 1e-6).all(axis=1)
             & (np.abs(hit[:, 0] - hit[:, 1]) > 1e-6))
    mask = out.mask.reshape(-1).numpy()
    assert inside.sum() > 200 and (~inside).sum() > 50  # the view sees the border
    assert np.array_equal(mask[clear] > 0, inside[clear])
    sel = clear & inside
    np.testing.assert_allclose(out.depth.reshape(-1).numpy()[sel], view_depth(cam, hit[sel]),
                               rtol=1e-12)
    assert (out.depth.reshape(-1).numpy()[~inside & clear] == 0).all()
    n = out.normal.reshape(-1, 3).numpy()
    np.testing.assert_allclose(n[sel], np.broadcast_to([0, 0, 1.0], n[sel].shape), atol=1e-12)
    assert (n[~inside & clear] == 0).all()
    tid = out.triangle_id.reshape(-1).numpy()
    expect = np.where(hit[:, 0] > hit[:, 1], 0, 1)  # triangle 0 is below the diagonal y = x
    assert np.array_equal(tid[sel], expect[sel])
    assert (tid[~inside & clear] == -1).all()


def _check_sphere(cam: Camera, center: np.ndarray, radius: float, sphere: trimesh.Trimesh, out):
    o, d = independent_rays(cam)
    # Inscribed radius of the faceted sphere: the nearest face plane.
    fn = sphere.face_normals
    r_in = np.min(np.abs(np.einsum("ij,ij->i", fn, sphere.triangles[:, 0] - center)))
    assert 0.95 * radius < r_in < radius
    oc = o - center
    b = d @ oc
    miss_dist = np.sqrt(np.maximum(oc @ oc - b**2, 0.0))  # ray's closest approach to the centre
    mask = out.mask.reshape(-1).numpy() > 0
    assert mask[miss_dist < r_in * (1 - 1e-9)].all()
    assert not mask[miss_dist > radius * (1 + 1e-9)].any()
    # Depth bracketed by the analytic entries into the circumscribed and inscribed spheres.
    t_out = -b - np.sqrt(np.maximum(b**2 - (oc @ oc - radius**2), 0))
    t_in = -b - np.sqrt(np.maximum(b**2 - (oc @ oc - r_in**2), 0))
    depth = out.depth.reshape(-1).numpy()
    deep = miss_dist < r_in * 0.999
    scale = view_depth(cam, o + d) - view_depth(cam, o)  # view depth per unit ray distance
    assert (depth[deep] >= t_out[deep] * scale[deep] - 1e-9).all()
    assert (depth[deep] <= t_in[deep] * scale[deep] + 1e-9).all()
    assert (depth[~mask] == 0).all()
    # Hit points lie on the reported triangle, and project back onto the pixel centres.
    tid = out.triangle_id.reshape(-1).numpy()
    assert (tid[mask] >= 0).all() and (tid[~mask] == -1).all()
    hit = o + (depth[mask] / scale[mask])[:, None] * d[mask]
    tri = sphere.triangles[tid[mask]]
    bary = trimesh.triangles.points_to_barycentric(tri, hit)
    assert bary.min() > -1e-6
    plane = np.einsum("ij,ij->i", fn[tid[mask]], hit - tri[:, 0])
    assert np.abs(plane).max() < 1e-9
    pix, _ = cam.project(torch.from_numpy(hit))
    h, w = cam.height, cam.width
    v, u = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
    centres = np.stack([u.ravel(), v.ravel()], axis=1)[mask]
    np.testing.assert_allclose(pix.numpy(), centres, atol=1e-6)
    np.testing.assert_allclose(out.normal.reshape(-1, 3).numpy()[mask], fn[tid[mask]], atol=1e-6)
    assert (out.normal.reshape(-1, 3).numpy()[~mask] == 0).all()


def test_sphere_against_analytic_intersection():
    center, radius = np.array([0.05, -0.02, 0.03]), 0.4
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=radius)
    sphere.apply_translation(center)
    cams = orbit_cameras(3, width=64, height=56, rng=7)
    batch = raycast(sphere.vertices, sphere.faces, cams, dtype=torch.float64)
    assert batch.depth.shape == (3, 56, 64) and batch.normal.shape == (3, 56, 64, 3)
    for i, cam in enumerate(cams):
        single = raycast(sphere.vertices, sphere.faces, cam, dtype=torch.float64)
        assert torch.equal(single.depth, batch.depth[i])
        assert torch.equal(single.triangle_id, batch.triangle_id[i])
        _check_sphere(cam, center, radius, sphere, single)


def test_zoomed_off_centre_camera():
    center, radius = np.zeros(3), 0.45
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=radius)
    cam = orbit_cameras(1, width=40, height=40, rng=3)[0].zoom((0.3, 0.9, -0.2, 0.4), s=1.1)
    out = raycast(sphere.vertices, sphere.faces, cam, dtype=torch.float64)
    assert 0 < out.mask.mean() < 1
    _check_sphere(cam, center, radius, sphere, out)


def test_real_mesh_open_and_types():
    m = load_mesh(mesh_file("mannequin-devil"))
    cam = orbit_cameras(2, width=32, height=32)[1]
    out = raycast(*m.torch(), cam)
    assert out.depth.dtype == torch.float32 and out.triangle_id.dtype == torch.long
    hit = out.mask > 0
    assert hit.any() and set(out.mask.unique().tolist()) <= {0.0, 1.0}
    assert torch.allclose(out.normal[hit].norm(dim=-1), torch.ones(int(hit.sum())), atol=1e-5)
    # Every hit lies inside the unit box's depth range seen from this camera.
    assert (out.depth[hit] > cam.near).all() and (out.depth[hit] < cam.far).all()


def test_bad_input_and_missing_embree(monkeypatch):
    cam = orbit_cameras(1, width=8, height=8)[0]
    v = np.zeros((3, 3))
    with pytest.raises(ValueError, match="out of range"):
        raycast(v, np.array([[0, 1, 3]]), cam)
    with pytest.raises(ValueError, match="NaN"):
        raycast(np.full((3, 3), np.nan), np.array([[0, 1, 2]]), cam)
    monkeypatch.setitem(sys.modules, "embreex", None)  # makes `import embreex` fail
    with pytest.raises(ImportError, match="embreex"):
        raycast(np.eye(3), np.array([[0, 1, 2]]), cam)
