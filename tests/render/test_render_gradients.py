"""Gradients of the renderers: finite differences in float64, and a mask-only silhouette fit."""

from __future__ import annotations

import pytest
import torch
from _render_helpers import one_torch_thread  # noqa: F401 (autouse fixture)
from _render_helpers import mesh_tensors, views

from focusing.core.geometry.camera import Camera
from focusing.render.renderers import EmbreeRenderer, TorchRenderer
from focusing.render.shading import antialiased_mask, view_rays


def _loss(renderer, v, f, cams, weights):
    out = renderer.render(v, f, cams)
    wd, wn, wm = weights
    return (wd * out.depth).sum() + (wn * out.normal).sum() + (wm * out.mask).sum()


@pytest.mark.parametrize("smooth", [False, True], ids=["face", "smooth"])
def test_gradients_match_central_differences(smooth):
    """Directional derivatives of a weighted sum of depth, normal and mask, float64, real mesh.

    The finite difference re-runs the whole render (visibility included); with a step of 1e-6
    no pixel centre changes side of an edge, so both sides see the same visible faces."""
    v, f = mesh_tensors("couplingdown", torch.float64)
    v = v.clone()
    cams = views(2, 40, seed=5)
    g = torch.Generator().manual_seed(0)
    weights = (
        torch.randn(2, 40, 40, generator=g, dtype=torch.float64),
        torch.randn(2, 40, 40, 3, generator=g, dtype=torch.float64),
        torch.randn(2, 40, 40, generator=g, dtype=torch.float64),
    )
    r = TorchRenderer(smooth_normals=smooth)
    x = v.clone().requires_grad_(True)
    grad = torch.autograd.grad(_loss(r, x, f, cams, weights), x)[0]
    assert float(grad.abs().sum()) > 0
    eps = 1e-6
    for _ in range(4):
        direction = torch.randn(v.shape, generator=g, dtype=torch.float64)
        with torch.no_grad():
            fd = (
                _loss(r, v + eps * direction, f, cams, weights)
                - _loss(r, v - eps * direction, f, cams, weights)
            ) / (2 * eps)
        analytic = (grad * direction).sum()
        assert torch.allclose(analytic, fd, rtol=1e-5, atol=1e-6), (float(analytic), float(fd))


def test_mask_gradient_matches_differences_per_silhouette_vertex():
    """The antialiased mask alone: every coordinate of the vertices on the silhouette."""
    v, f = mesh_tensors("couplingdown", torch.float64)
    cams = views(1, 48, seed=2)
    tid = TorchRenderer().render(v, f, cams).triangle_id
    rays = view_rays(cams, torch.float64, v.device)
    w = torch.randn(1, 48, 48, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x = v.clone().requires_grad_(True)
    grad = torch.autograd.grad((w * antialiased_mask(x, f, tid, rays)).sum(), x)[0]
    touched = torch.nonzero(grad.abs().sum(1) > 0).squeeze(1)
    assert len(touched) >= 20  # many silhouette vertices get gradients
    eps = 1e-6
    for vi in touched[:: max(1, len(touched) // 15)].tolist():
        for axis in range(3):
            vp, vm = v.clone(), v.clone()
            vp[vi, axis] += eps
            vm[vi, axis] -= eps
            fd = ((w * antialiased_mask(vp, f, tid, rays)).sum()
                  - (w * antialiased_mask(vm, f, tid, rays)).sum()) / (2 * eps)
            assert abs(float(fd) - float(grad[vi, axis])) < 1e-5 + 1e-5 * abs(float(fd))


@pytest.mark.parametrize("renderer_cls", [TorchRenderer, EmbreeRenderer], ids=["torch", "embree"])
def test_mask_loss_alone_moves_a_shifted_square_back(renderer_cls):
    """Two triangles shifted by (3, -2) pixels; L1 of the mask alone to the target pulls them home.

    The target is the home square rendered by the same renderer (as ground truth is in
    training); its binary coverage is first checked against the analytic square."""
    ok, why = renderer_cls.available()
    if not ok:
        pytest.skip(why)
    size = 64
    cam = Camera.looking_at((0.0, 0.0, 3.0), (0.0, 0.0, 0.0), fov_y_deg=40.0,
                            width=size, height=size, near=0.5, far=10.0)
    half = 0.4
    home = torch.tensor([[-half, -half, 0], [half, -half, 0], [half, half, 0], [-half, half, 0]],
                        dtype=torch.float32)
    f = torch.tensor([[0, 1, 2], [0, 2, 3]])
    r = renderer_cls()
    target = r.render(home, f, cam)
    # independent check of the target: pixels whose centre rays hit the square (ray/plane)
    origin, dirs = cam.pixel_rays(torch.float64)
    t = -origin[2] / dirs[..., 2]
    hit = origin + t[..., None] * dirs
    inside = (hit[..., 0].abs() < half) & (hit[..., 1].abs() < half)
    assert bool(((target.triangle_id >= 0) == inside).all())
    target_mask = target.mask.detach()
    pixel = float(2 * 3.0 * torch.tan(torch.deg2rad(torch.tensor(20.0))) / size)  # at z = 0
    # the square's in-plane offset is the parameter: every vertex gets the same shift and the
    # gradients reach it through the vertices (a lone corner's along-edge slack is ruled out)
    offset = (torch.tensor([3.0, -2.0]) * pixel).requires_grad_(True)
    opt = torch.optim.Adam([offset], lr=0.3 * pixel)
    schedule = torch.optim.lr_scheduler.ExponentialLR(opt, 0.93)
    start = float(offset.detach().norm())
    for _ in range(40):
        opt.zero_grad()
        x = home + torch.cat([offset, offset.new_zeros(1)])
        loss = (r.render(x, f, cam).mask - target_mask).abs().mean()
        loss.backward()
        opt.step()
        schedule.step()
    err = float(offset.detach().norm())
    assert start > 3 * pixel
    assert err < 0.1 * pixel, (start / pixel, err / pixel)
