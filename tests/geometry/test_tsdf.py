"""View-based TSDF against the analytic sphere and on real open meshes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import trimesh

from focusing.core.geometry.camera import Camera, orbit_cameras
from focusing.core.geometry.meshio import load_mesh
from focusing.core.geometry.raycast import raycast
from focusing.core.geometry.sampling import sample_surface
from focusing.core.geometry.tsdf import fuse_view_tsdf, view_tsdf

from meshdata import mesh_file

R_SPHERE = 0.35
CENTER = np.array([0.02, -0.03, 0.01])
T = 0.05
FOV = 40.0


@pytest.fixture(scope="module")
def sphere_views():
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=R_SPHERE)
    sphere.apply_translation(CENTER)
    cams = orbit_cameras(8, width=96, height=96, fov_y_deg=FOV)
    depth = raycast(sphere.vertices, sphere.faces, cams, dtype=torch.float64).depth
    # Faceting: the icosphere lies between its inscribed sphere and the true one.
    sag = R_SPHERE - np.min(np.abs(np.einsum("ij,ij->i", sphere.face_normals,
                                              sphere.triangles[:, 0] - CENTER)))
    return cams, depth, sag


def _near_sphere_points(n, seed):
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    sdf = rng.uniform(-2 * T, 2 * T, size=n)
    return CENTER + d * (R_SPHERE + sdf)[:, None], sdf


def _analytic_pixel_depth(cam: Camera, pix: np.ndarray) -> np.ndarray:
    """View depth of the true sphere along the ray through each pixel centre (0 on a miss) and
    the cosine of the ray's incidence angle there."""
    centres = np.floor(pix) + 0.5
    inv = np.linalg.inv(cam.full_matrix.numpy())
    x = centres[:, 0] / cam.width * 2 - 1
    y = 1 - centres[:, 1] / cam.height * 2
    ends = []
    for z in (-1.0, 1.0):
        c = np.stack([x, y, np.full_like(x, z), np.ones_like(x)], axis=1) @ inv.T
        ends.append(c[:, :3] / c[:, 3:])
    o = np.linalg.inv(cam.world_to_view.numpy())[:3, 3]
    d = ends[1] - ends[0]
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    oc = o - CENTER
    b = d @ oc
    disc = b**2 - (oc @ oc - R_SPHERE**2)
    t = -b - np.sqrt(np.maximum(disc, 0))
    hit = o + t[:, None] * d
    m = cam.world_to_view.numpy()
    cos_inc = np.sqrt(np.maximum(disc, 0)) / R_SPHERE  # |d . n| at the entry point
    return np.where(disc > 0, -(hit @ m[2, :3] + m[2, 3]), 0.0), cos_inc


def test_single_view_matches_analytic_lookup(sphere_views):
    cams, depth, sag = sphere_views
    pts, _ = _near_sphere_points(4000, 0)
    for cam, dm in zip(cams[:3], depth[:3]):
        val, ok = view_tsdf(torch.from_numpy(pts), cam, dm, T)
        pix, d = cam.project(torch.from_numpy(pts))
        assert ok.all()  # orbit cameras see the whole unit box
        big, cos_inc = _analytic_pixel_depth(cam, pix.numpy())
        ref = np.where(big > 0, np.clip(big - d.numpy(), -T, T), T)
        # Faceting moves a hit by <= sag / cos(incidence) along the ray (and view depth is
        # shorter than ray distance); grazing pixels (incidence > ~64 deg) are skipped.
        steep = cos_inc > 0.44
        assert steep.mean() > 0.5
        err = np.abs(val.numpy() - ref)
        assert err[steep].max() <= sag / 0.44 + 1e-9, err[steep].max()
        miss = big == 0  # pixel centre ray misses even the true sphere: background, +t exactly
        assert miss.any() and (val.numpy()[miss] == T).all()


def test_view_validity_and_background():
    cam = Camera.looking_at((0, 0, 2.0), width=16, height=12, fov_y_deg=40)
    dm = torch.zeros(12, 16)
    dm[:, 8:] = 2.0  # a wall at depth 2 on the right half, background on the left
    pts = torch.tensor([
        [0.1, 0.0, 0.5],   # right half, depth 1.5: in front of the wall by 0.5 -> +t
        [0.02, 0.0, 0.03],  # right half, depth 1.97: +0.03
        [0.01, 0.0, -0.04],  # right half, depth 2.04: -0.04
        [-0.1, 0.0, 0.0],  # left half: background -> +t
        [5.0, 0.0, 0.0],   # outside the image
        [0.0, 0.0, 3.0],   # behind the camera
    ], dtype=torch.float64)
    val, ok = view_tsdf(pts, cam, dm, 0.1)
    assert ok.tolist() == [True, True, True, True, False, False]
    np.testing.assert_allclose(val[:4].numpy(), [0.1, 0.03, -0.04, 0.1], atol=1e-12)
    with pytest.raises(ValueError, match="depth map"):
        view_tsdf(pts, cam, torch.zeros(5, 5), 0.1)
    with pytest.raises(ValueError, match="one depth map per camera"):
        fuse_view_tsdf(pts, [cam, cam], dm[None], 0.1)


def test_fused_sign_and_bounds_against_exact_sdf(sphere_views):
    cams, depth, sag = sphere_views
    pts, sdf = _near_sphere_points(6000, 1)
    fused = fuse_view_tsdf(torch.from_numpy(pts), cams, depth, T).numpy()
    assert np.isfinite(fused).all() and np.abs(fused).max() <= T
    # Margin: faceting plus one pixel's footprint at the far side of the box.
    pixel = 2 * math.tan(math.radians(FOV / 2)) * (2.0 + 0.87) / 96
    margin = sag + pixel
    outside, inside = sdf > margin, sdf < -margin
    assert (fused[outside] > 0).all()
    assert (fused[inside] < 0).all()
    # Inside a convex body the front surface is at least |sdf| away along any ray, i.e. at least
    # |sdf| cos(half-diagonal FoV) in view depth: fused values cannot be shallower than that.
    cos_max = math.cos(math.atan(math.sqrt(2) * math.tan(math.radians(FOV / 2))))
    assert (fused[inside] <= np.maximum(sdf[inside] * cos_max + margin, -T)).all()
    deep = sdf < -T / cos_max - margin
    assert deep.any() and (fused[deep] == -T).all()
    # Points well outside the band are free space.
    assert (fused[sdf > T + margin] == T).all()


@pytest.mark.parametrize("name", ["mannequin-devil", "blade"])
def test_real_open_mesh_signs(name):
    m = load_mesh(mesh_file(name))
    cams = orbit_cameras(8, width=96, height=96)
    depth = raycast(m.vertices, m.faces, cams, dtype=torch.float64).depth
    p, n = sample_surface(m, 3000, seed=0)
    t, eps = 0.03, 0.008
    front = fuse_view_tsdf(torch.from_numpy(p + eps * n), cams, depth, t)
    back = fuse_view_tsdf(torch.from_numpy(p - eps * n), cams, depth, t)
    on = fuse_view_tsdf(torch.from_numpy(p), cams, depth, t)
    for v in (front, back, on):
        assert torch.isfinite(v).all() and v.abs().max() <= t
    if name == "blade":
        # A sheet thinner than a pixel has no inside: both sides are free space.
        assert (front > 0).float().mean() > 0.95 and (back > 0).float().mean() > 0.95
    else:
        assert (front > 0).float().mean() > 0.9  # the outward side is free space
        assert (back < 0).float().mean() > 0.9  # just behind the outward surface
        # On the surface the value is small (a pixel footprint, not the truncation) and
        # unbiased: the silhouette erosion keeps the free-space test from carving it away.
        assert on.abs().median() < 0.3 * t and on.mean().abs() < 0.1 * t
        carved = fuse_view_tsdf(torch.from_numpy(p), cams, depth, t, free_erosion=0)
        assert carved.mean() > on.mean() + 0.1 * t


# ------------------------------------------------------------------------------ training target
def _project_mesh(tm):
    from focusing.core.geometry.mesh import Mesh

    return Mesh(np.asarray(tm.vertices, dtype=np.float64), np.asarray(tm.faces), None)


def test_surface_tsdf_is_the_exact_distance_with_the_views_sign(sphere_views):
    from focusing.core.geometry.tsdf import surface_tsdf

    cams, depth, sag = sphere_views
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=R_SPHERE)
    sphere.apply_translation(CENTER)
    p, _ = _near_sphere_points(3000, seed=5)
    out = surface_tsdf(_project_mesh(sphere), torch.as_tensor(p), cams, depth, T,
                       sign_band=0.005, sheet_half_width=0.01).numpy()
    exact = np.clip(np.linalg.norm(p - CENTER, axis=1) - R_SPHERE, -T, T)
    err = np.abs(out - exact)
    # magnitude: the exact distance up to the icosphere's faceting; a sign can only be wrong
    # where the views are not decisive, within a pixel or two of the surface (96^2 views)
    assert (err[np.abs(exact) > 0.01] <= sag + 1e-6).all()
    assert (np.abs(np.abs(out) - np.abs(exact)) <= sag + 1e-6).all()
    assert (err > sag + 1e-6).mean() < 0.01
    assert (out < 0).any()  # a closed shape: the sheet rule leaves it alone


def test_surface_tsdf_turns_a_sheet_without_inside_into_a_thin_shell():
    """The example blade is a sheet thinner than an output voxel: at the small budget's
    settings (latent 32, 8 views of 96^2) no corner of its target is inside, so there is no
    zero crossing to learn. With sheet_half_width w the target is the shell |d| - w."""
    from focusing.core.geometry.mesh import normalize_mesh
    from focusing.core.geometry.tsdf import surface_tsdf
    from focusing.core.geometry.voxelize import dilate_voxels, surface_voxels

    mesh, _, _ = normalize_mesh(load_mesh(mesh_file("blade"), normalize=False))
    r, out_res = 32, 128
    active = dilate_voxels(surface_voxels(mesh, r), r)
    offsets = torch.stack(torch.meshgrid(*[torch.arange(5)] * 3, indexing="ij"), -1).reshape(-1, 3)
    corners = torch.unique((active[:, None, :] * 4 + offsets[None]).reshape(-1, 3), dim=0)
    world = corners.double() / out_res - 0.5
    cams = orbit_cameras(8, fov_y_deg=55.0, width=96, height=96)
    depth = torch.stack([raycast(torch.as_tensor(mesh.vertices), torch.as_tensor(mesh.faces),
                                 c, dtype=torch.float64).depth for c in cams])
    t, w = 2.0 / out_res, 0.5 / out_res
    signed = surface_tsdf(mesh, world, cams, depth, t, sign_band=w)
    shell = surface_tsdf(mesh, world, cams, depth, t, sign_band=w, sheet_half_width=w)
    assert not (signed < 0).any()
    torch.testing.assert_close(shell, (signed.abs() - w).clamp(-t, t))
    assert (shell < 0).sum() > 0.01 * len(shell)
