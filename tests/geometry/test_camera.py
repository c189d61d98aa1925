"""Camera conventions: projection, rays, look_at, orbit coverage and zoom (eq. 4)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from focusing.core.geometry.camera import Camera, look_at, orbit_cameras, perspective

CORNERS = torch.tensor(list(itertools.product([-0.5, 0.5], repeat=3)), dtype=torch.float64)


def _cams():
    base = Camera.looking_at((0.7, 0.9, 1.8), (0.05, -0.1, 0.02), fov_y_deg=45, width=64, height=48)
    return ([base, base.zoom((-0.35, 0.2, -0.5, 0.15), s=1.2)]
            + orbit_cameras(3, rng=4, width=40, height=30))


@pytest.mark.parametrize("i", range(5))
def test_project_unproject_round_trip(i):
    cam = _cams()[i]
    pts = torch.from_numpy(np.random.default_rng(i).uniform(-0.5, 0.5, size=(500, 3)))
    pix, depth = cam.project(pts)
    back = cam.unproject(pix, depth)
    torch.testing.assert_close(back, pts, atol=1e-10, rtol=0)
    # View depth is -z in view space, computed independently from the 4x4 matrix.
    m = cam.world_to_view
    torch.testing.assert_close(depth, -(pts @ m[2, :3] + m[2, 3]), atol=1e-12, rtol=0)


@pytest.mark.parametrize("i", range(5))
def test_pixel_rays_hit_pixel_centres(i):
    cam = _cams()[i]
    origin, dirs = cam.pixel_rays()
    assert dirs.shape == (cam.height, cam.width, 3)
    torch.testing.assert_close(dirs.norm(dim=-1),
                               torch.ones(cam.height, cam.width, dtype=torch.float64))
    torch.testing.assert_close(origin, torch.linalg.inv(cam.world_to_view)[:3, 3])
    s = 1.7
    pts = (origin + s * dirs).reshape(-1, 3)
    pix, depth = cam.project(pts)
    v, u = torch.meshgrid(torch.arange(cam.height) + 0.5, torch.arange(cam.width) + 0.5,
                          indexing="ij")
    torch.testing.assert_close(pix, torch.stack([u, v], -1).reshape(-1, 2).double(), atol=1e-9,
                               rtol=0)
    torch.testing.assert_close(depth, s * cam.ray_depth_scale().reshape(-1), atol=1e-12, rtol=0)


def test_look_at_orthonormal_and_aimed():
    for eye, target in [((1.0, 2.0, 3.0), (0.1, 0.0, -0.2)), ((0.0, 2.0, 0.0), (0.0, 0.0, 0.0))]:
        m = look_at(eye, target)  # the second looks straight down `up`
        r = m[:3, :3]
        torch.testing.assert_close(r @ r.T, torch.eye(3, dtype=torch.float64))
        assert abs(torch.linalg.det(r).item() - 1.0) < 1e-12
        eye_t = torch.tensor(eye, dtype=torch.float64)
        target_t = torch.tensor(target, dtype=torch.float64)
        tv = r @ target_t + m[:3, 3]
        dist = (target_t - eye_t).norm()
        torch.testing.assert_close(tv, torch.tensor([0.0, 0.0, -dist.item()], dtype=torch.float64))
        torch.testing.assert_close(r @ eye_t + m[:3, 3], torch.zeros(3, dtype=torch.float64))
    # Up stays up: a point above the target appears above the image centre.
    cam = Camera.looking_at((0.0, 0.0, 3.0), width=32, height=32)
    pix, _ = cam.project(torch.tensor([[0.0, 0.5, 0.0]], dtype=torch.float64))
    assert pix[0, 1] < 16 and abs(pix[0, 0] - 16) < 1e-9


def test_perspective_near_far_map_to_ndc_bounds():
    near, far = 0.3, 7.0
    p = perspective(50.0, 1.5, near, far)
    for z, ndc in ((-near, -1.0), (-far, 1.0)):
        clip = p @ torch.tensor([0.0, 0.0, z, 1.0], dtype=torch.float64)
        assert abs(clip[2] / clip[3] - ndc) < 1e-12
    # Vertical FoV: a point at angle fov/2 above the axis lands on the top edge.
    y = math.tan(math.radians(25.0)) * 2.0
    clip = p @ torch.tensor([0.0, y, -2.0, 1.0], dtype=torch.float64)
    assert abs(clip[1] / clip[3] - 1.0) < 1e-12


@pytest.mark.parametrize("rng", [None, 0, 1])
def test_orbit_cameras_see_the_whole_unit_box(rng):
    # The FoV that holds the box's bounding sphere (radius sqrt(3)/2) seen from radius 2.
    fov = 2 * math.degrees(math.asin(math.sqrt(3) / 2 / 2.0)) + 0.5
    cams = orbit_cameras(12, rng=rng, width=50, height=50, fov_y_deg=fov)
    for cam in cams:
        ndc = cam.project_ndc(CORNERS)
        assert (ndc.abs() < 1).all()  # x, y inside the image, z between near and far
        _, depth = cam.project(CORNERS)
        assert (depth > cam.near).all() and (depth < cam.far).all()
        assert abs(cam.position.norm().item() - 2.0) < 1e-12
    # The default 40 degrees (TRELLIS-like) holds the box's inscribed ball, and crops corners
    # in some views: depths always stay inside near/far.
    default = orbit_cameras(12, rng=rng, width=50, height=50)
    ball = torch.from_numpy(np.random.default_rng(0).normal(size=(2000, 3)))
    ball = 0.5 * ball / ball.norm(dim=1, keepdim=True)
    for cam in default:
        assert (cam.project_ndc(ball).abs() < 1).all()
        _, depth = cam.project(CORNERS)
        assert (depth > cam.near).all() and (depth < cam.far).all()
    if rng is None:  # the Fibonacci spiral spreads views over the sphere
        dirs = torch.stack([c.position for c in cams]) / 2.0
        assert dirs.mean(dim=0).norm() < 0.1


@pytest.mark.parametrize("s", [1.0, 1.1, 0.8])
def test_zoom_maps_the_box_to_minus_s_plus_s(s):
    cam = orbit_cameras(1, rng=2, width=64, height=40)[0]
    # A box around part of the projected unit box, with different x and y extents and centres
    # (a y row built from the x bounds would fail).
    pts = torch.from_numpy(np.random.default_rng(0).uniform(-0.5, 0.2, size=(200, 3)))
    ndc = cam.project_ndc(pts)
    xmin, xmax = ndc[:, 0].min().item(), ndc[:, 0].max().item()
    ymin, ymax = ndc[:, 1].min().item(), ndc[:, 1].max().item()
    assert abs((xmax - xmin) - (ymax - ymin)) > 0.05 and abs((xmax + xmin) - (ymax + ymin)) > 0.05
    z = cam.zoom((xmin, xmax, ymin, ymax), s)
    zn = z.project_ndc(pts)
    torch.testing.assert_close(zn[:, 0].min(), torch.tensor(-s, dtype=torch.float64))
    torch.testing.assert_close(zn[:, 0].max(), torch.tensor(s, dtype=torch.float64))
    torch.testing.assert_close(zn[:, 1].min(), torch.tensor(-s, dtype=torch.float64))
    torch.testing.assert_close(zn[:, 1].max(), torch.tensor(s, dtype=torch.float64))
    # Depth and NDC z are untouched; the box centre goes to the image centre.
    torch.testing.assert_close(zn[:, 2], ndc[:, 2])
    torch.testing.assert_close(z.project(pts)[1], cam.project(pts)[1])
    centre = torch.tensor([[(xmin + xmax) / 2, (ymin + ymax) / 2]], dtype=torch.float64)
    w = cam.unproject(torch.stack([(centre[:, 0] + 1) / 2 * cam.width,
                                   (1 - centre[:, 1]) / 2 * cam.height], -1), torch.tensor([2.0]))
    pix, _ = z.project(w)
    torch.testing.assert_close(pix, torch.tensor([[32.0, 20.0]], dtype=torch.float64))
    if s == 1.0:  # the extreme points sit on the image border
        p, _ = z.project(pts)
        assert abs(p[:, 0].min().item()) < 1e-9 and abs(p[:, 0].max().item() - 64) < 1e-9


def test_zoom_rejects_bad_input():
    cam = orbit_cameras(1)[0]
    with pytest.raises(ValueError, match="degenerate"):
        cam.zoom((0.2, 0.2, -0.1, 0.3))
    with pytest.raises(ValueError, match="positive"):
        cam.zoom((-0.2, 0.2, -0.1, 0.3), s=0)
    with pytest.raises(ValueError):
        Camera.looking_at((0, 0, 2.0), near=1.0, far=0.5)


def test_pixel_size_at_a_depth_is_one_projected_pixel():
    """Two points at view depth d, pixel_size_at(d) apart along the camera's up axis, project
    one pixel row apart (an independent check through the full projection)."""
    import math

    from focusing.core.geometry.camera import Camera

    cam = Camera.looking_at((0.0, 0.0, 3.0), (0.0, 0.0, 0.0), fov_y_deg=55.0, width=96,
                            height=80)
    for depth in (1.0, 2.5):
        size = cam.pixel_size_at(depth)
        assert size == pytest.approx(2 * depth * math.tan(math.radians(27.5)) / 80)
        pts = torch.tensor([[0.0, 0.0, 3.0 - depth], [0.0, size, 3.0 - depth]], dtype=torch.float64)
        pix, d = cam.project(pts)
        assert torch.allclose(d, torch.full((2,), depth, dtype=torch.float64))
        assert float((pix[0, 1] - pix[1, 1]).abs()) == pytest.approx(1.0)
