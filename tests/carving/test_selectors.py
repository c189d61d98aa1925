"""Voxel selectors against independent brute-force computations on real meshes, plus the
contract: registered, deterministic, sorted unique indices, empty views, chaining."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _carving_helpers import active_xyz, mesh, voxels_of
from scipy.optimize import linprog

from focusing.carving.bound import lower_bound
from focusing.carving.depth_carving_tight import support_voxels
from focusing.core.geometry.camera import Camera, orbit_cameras
from focusing.core.geometry.raycast import raycast
from focusing.core.plugin_system import get_registry

NAMES = ["all", "frustum", "far-plane", "depth-carving", "depth-carving-tight", "zoom"]


def build(name, **params):
    return get_registry("voxel_selector").get(name)(**params)


def gt(name, cam):
    m = mesh(name)
    return raycast(m.vertices, m.faces, cam)


# --- brute force, float64, one voxel at a time -------------------------------------------


def _clip_matrix(cam):
    return (cam.projection @ cam.world_to_view).numpy()


def _brute_project(cam, p):
    """Pixel (col, row) floors and view depth of one world point, from the matrices."""
    m = _clip_matrix(cam)
    c = m @ np.append(p, 1.0)
    x, y = c[0] / c[3], c[1] / c[3]
    u, v = (x + 1) / 2 * cam.width, (1 - y) / 2 * cam.height
    depth = -(cam.world_to_view.numpy() @ np.append(p, 1.0))[2]
    return math.floor(u), math.floor(v), depth


def _cube_meets_frustum_lp(cam, ijk, res):
    """Feasibility LP: a point of the cube with -w <= x, y, z <= w in clip space."""
    m = _clip_matrix(cam)
    rows = []
    for i in range(3):
        rows.append(-(m[3] + m[i]))  # w + c_i >= 0  ->  -(w + c_i) <= 0
        rows.append(-(m[3] - m[i]))
    a = np.array([r[:3] for r in rows])
    b = -np.array([r[3] for r in rows]) + 1e-9
    lo = -0.5 + np.asarray(ijk, float) / res
    res_lp = linprog(np.zeros(3), A_ub=a, b_ub=b, bounds=list(zip(lo, lo + 1.0 / res)),
                     method="highs")
    return res_lp.status == 0


def test_registered_with_stages():
    reg = get_registry("voxel_selector")
    for n in NAMES:
        assert n in reg
    stages = {n: reg.get(n).default_stage for n in NAMES}
    assert stages == {
        "all": "output", "frustum": "output", "far-plane": "output",
        "depth-carving": "latent", "depth-carving-tight": "latent", "zoom": "latent",
    }


def test_frustum_matches_exhaustive_lp():
    res = 10
    xyz = torch.stack(torch.meshgrid(*(torch.arange(res),) * 3, indexing="ij"), -1).reshape(-1, 3)
    # A close, zoomed, off-centre camera whose near plane and sides cut through the box.
    cam = Camera.looking_at((0.9, 0.3, 0.5), (0.1, 0.0, 0.0), fov_y_deg=35, width=64, height=48,
                            near=0.5, far=1.3)
    cam = cam.zoom((-0.6, 0.2, -0.3, 0.5), s=1.1)
    sel = build("frustum").select(voxels_of(xyz, res), cam, None, np.random.default_rng(0))
    ours = set(sel.index.tolist())
    brute = {i for i in range(xyz.shape[0]) if _cube_meets_frustum_lp(cam, xyz[i].tolist(), res)}
    assert 0 < len(brute) < xyz.shape[0]
    assert ours == brute


def test_far_plane_keeps_nearest_ratio():
    res = 16
    xyz = active_xyz("fandisk", res)
    cam = orbit_cameras(1, width=64, height=64, rng=3)[0]
    frustum = build("frustum").select(voxels_of(xyz, res), cam, None, None).index
    sel = build("far-plane", alpha=0.3).select(voxels_of(xyz, res), cam, None, None)
    c = ((xyz.double() + 0.5) / res - 0.5).numpy()
    depth = {int(i): _brute_project(cam, c[i])[2] for i in frustum}
    order = sorted(depth.values())
    cut = order[math.ceil(0.3 * len(order)) - 1]
    assert set(sel.index.tolist()) == {i for i, d in depth.items() if d <= cut}
    assert sel.camera_changed and sel.camera.far == pytest.approx(cut)
    assert sel.camera.near >= cam.near


@pytest.mark.parametrize("name", ["fandisk", "elephant-with-holes"])
def test_depth_carving_matches_brute_force(name):
    res, size = 16, 48
    xyz = active_xyz(name, res)
    cam = orbit_cameras(1, width=size, height=size, rng=5)[0]
    g = gt(name, cam)
    sel = build("depth-carving").select(voxels_of(xyz, res), cam, g, None)
    depth = g.depth.double().numpy()
    c = ((xyz.double() + 0.5) / res - 0.5).numpy()
    kept = set()
    for i in range(xyz.shape[0]):
        u, v, d = _brute_project(cam, c[i])
        if (0 <= u < size and 0 <= v < size and d > 0 and depth[v, u] > 0
                and d <= depth[v, u] + 2 / res):
            kept.add(tuple(xyz[i].tolist()))
    active = {tuple(t): i for i, t in enumerate(xyz.tolist())}
    grown = set()
    for k in kept:
        for o in np.ndindex(3, 3, 3):
            nb = (k[0] + o[0] - 1, k[1] + o[1] - 1, k[2] + o[2] - 1)
            if nb in active:
                grown.add(active[nb])
    assert len(kept) > 0
    assert set(sel.index.tolist()) == grown


def test_lower_bound_matches_pixel_loop():
    res, size = 24, 40
    xyz = active_xyz("bunny00", res)
    cam = orbit_cameras(1, width=size, height=size, rng=2)[0]
    g = gt("bunny00", cam)
    b = lower_bound(voxels_of(xyz, res), cam, g)
    inv = torch.linalg.inv(cam.projection @ cam.world_to_view).numpy()
    active = {tuple(t): i for i, t in enumerate(xyz.tolist())}
    want = set()
    for v in range(size):
        for u in range(size):
            d = float(g.depth[v, u])
            if d <= 0:
                continue
            # The pixel centre's ray at view depth d: solve with the clip-space inverse at two
            # NDC depths and interpolate by view depth.
            x, y = (u + 0.5) / size * 2 - 1, 1 - (v + 0.5) / size * 2
            pts = []
            for z in (-0.5, 0.5):
                h = inv @ np.array([x, y, z, 1.0])
                pts.append(h[:3] / h[3])
            vd = [-(cam.world_to_view.numpy() @ np.append(p, 1))[2] for p in pts]
            p = pts[0] + (pts[1] - pts[0]) * (d - vd[0]) / (vd[1] - vd[0])
            key = tuple(int(t) for t in np.floor((p + 0.5) * res))
            assert key in active  # the active set covers the surface
            want.add(active[key])
    assert b.missing == 0
    assert set(b.index.tolist()) == want


def test_tight_support_of_a_plane_is_its_layer():
    res = 8
    # A plane z = const inside voxel layer 3 (away from its faces): the dual mesher builds its
    # faces from the z-parallel edges only, whose 4 cubes are in the same layer.
    z = -0.5 + 3.4 / res
    pts = torch.tensor([[-0.5 + 4.5 / res, -0.5 + 2.5 / res, z]], dtype=torch.float64)
    nrm = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    got = {tuple(t) for t in support_voxels(pts, nrm, res, margin=0.0).tolist()}
    assert got == {(4 + i, 2 + j, 3) for i in (-1, 0, 1) for j in (-1, 0, 1)}
    # A plane 0.2 voxel below the layer's top face, with a 0.3 voxel margin: the layer above
    # is needed too, the one below is not.
    pts[0, 2] = -0.5 + 3.8 / res
    got = {tuple(t) for t in support_voxels(pts, nrm, res, margin=0.3).tolist()}
    assert got == {(4 + i, 2 + j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (3, 4)}
    # No normal: the whole 3x3x3 neighbourhood.
    got = support_voxels(pts, torch.zeros_like(nrm), res, margin=0.0)
    assert got.shape[0] == 27


@pytest.mark.parametrize("name", ["armadillo", "mannequin-devil"])
def test_tight_keeps_the_bound_and_stays_inside_paper_rule_dilation(name):
    res = 32
    xyz = active_xyz(name, res)
    vox = voxels_of(xyz, res)
    for cam in orbit_cameras(2, width=128, height=128, rng=11):
        g = gt(name, cam)
        b = lower_bound(vox, cam, g)
        tight = build("depth-carving-tight").select(vox, cam, g, None).index
        assert torch.isin(b.index, tight).all()  # recall 1
        paper = build("depth-carving").select(vox, cam, g, None).index
        assert tight.numel() < paper.numel()


@pytest.mark.parametrize("name", NAMES)
def test_contract_deterministic_sorted_unique(name):
    res = 24
    xyz = active_xyz("camel", res)
    vox = voxels_of(xyz, res)
    cam = orbit_cameras(1, width=64, height=64, rng=4)[0]
    g = gt("camel", cam)
    a = build(name).select(vox, cam, g, np.random.default_rng(7))
    b = build(name).select(vox, cam, g, np.random.default_rng(7))
    assert torch.equal(a.index, b.index)
    assert torch.equal(a.camera.projection, b.camera.projection)
    assert a.index.dtype == torch.long and a.index.numel() > 0
    assert torch.equal(a.index, torch.unique(a.index))  # sorted, no index twice
    assert int(a.index.max()) < xyz.shape[0]


@pytest.mark.parametrize("name", NAMES)
def test_empty_view_and_empty_set(name):
    res = 16
    xyz = active_xyz("fandisk", res)
    # Looking away from the object: nothing in the frustum, a blank ground truth.
    cam = Camera.looking_at((0.0, 0.0, 2.0), (0.0, 0.0, 5.0), width=32, height=32, near=0.1,
                            far=3.0)
    g = gt("fandisk", cam)
    assert not (g.depth > 0).any()
    sel = build(name).select(voxels_of(xyz, res), cam, g, np.random.default_rng(0))
    want = xyz.shape[0] if name == "all" else 0  # `all` is the control: it keeps everything
    assert sel.index.numel() == want and sel.index.dtype == torch.long
    empty = build(name).select(voxels_of(xyz[:0], res), cam, g, np.random.default_rng(0))
    assert empty.index.numel() == 0


def test_batched_voxels_are_refused():
    xyz = active_xyz("fandisk", 8)
    vox = voxels_of(xyz, 8)
    vox.coords[::2, 0] = 1
    cam = orbit_cameras(1, width=16, height=16, rng=0)[0]
    with pytest.raises(ValueError, match="one shape"):
        build("frustum").select(vox, cam, None, None)


def test_chain_carve_then_zoom_then_carve_again():
    res, size = 32, 128
    xyz = active_xyz("armadillo", res)
    vox = voxels_of(xyz, res)
    cam = orbit_cameras(1, width=size, height=size, rng=8)[0]
    g = gt("armadillo", cam)
    carved = build("depth-carving").select(vox, cam, g, None)
    sub = voxels_of(xyz[carved.index], res)
    zoom = build("zoom", n_min=40, n_max=80).select(sub, cam, g, np.random.default_rng(1))
    assert zoom.camera_changed and not torch.equal(zoom.camera.projection, cam.projection)
    rows = carved.index[zoom.index]  # rows of the original set
    assert 40 <= rows.numel() < carved.index.numel()
    # The trainer re-renders the ground truth for the new camera; the next selector uses it.
    g2 = gt("armadillo", zoom.camera)
    again = build("depth-carving").select(voxels_of(xyz[rows], res), zoom.camera, g2, None)
    assert 0 < again.index.numel() <= rows.numel()
    # Every visible voxel of the zoomed view that the carving kept is still in the chain.
    b = lower_bound(vox, zoom.camera, g2)
    in_carved = b.index[torch.isin(b.index, carved.index)]
    assert torch.isin(in_carved, rows).all()


def test_zoom_frames_its_cluster():
    res, size = 32, 128
    xyz = active_xyz("bunny00", res)
    cam = orbit_cameras(1, width=size, height=size, rng=9)[0]
    g = gt("bunny00", cam)
    z = build("zoom", n_min=30, n_max=30, fill_view=False)
    sel = z.select(voxels_of(xyz, res), cam, g, np.random.default_rng(3))
    assert sel.index.numel() == 30
    # The crop's cubes fill the zoomed image: their NDC box is [-s, s] (s = 1.1) on both axes.
    corners = torch.tensor([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    pts = ((xyz[sel.index][:, None] + corners[None]).reshape(-1, 3).double() / res - 0.5)
    m = sel.camera.projection @ sel.camera.world_to_view
    h = pts @ m[:, :3].T + m[:, 3]
    ndc = h[:, :2] / h[:, 3:]
    assert ndc.min(0).values.tolist() == pytest.approx([-1.1, -1.1], abs=1e-9)
    assert ndc.max(0).values.tolist() == pytest.approx([1.1, 1.1], abs=1e-9)
    # The 30 are the nearest in image space to one of them: no other voxel is nearer to the
    # cluster's centre voxel than the farthest member (brute force over all candidates).
    mo = cam.projection @ cam.world_to_view
    c = (xyz.double() + 0.5) / res - 0.5
    hc = c @ mo[:, :3].T + mo[:, 3]
    uv = hc[:, :2] / hc[:, 3:]
    inside = (uv.abs() <= 1).all(1) & (hc[:, 3] > 0)
    members = sel.index
    centre_candidates = [int(i) for i in members]
    ok = False
    for ci in centre_candidates:
        d = (uv[inside] - uv[ci]).norm(dim=1)
        kth = torch.sort(d).values[29]
        dm = (uv[members] - uv[ci]).norm(dim=1)
        if bool((dm <= kth + 1e-12).all()):
            ok = True
            break
    assert ok
