"""Sparse FlexiCubes on exact analytic SDFs (sphere, torus, box) at 32^3 and 64^3.

Error bound. With an exact SDF, unit weights and no deformation, an edge crossing is the zero
of the linear interpolation of a 1-Lipschitz function whose curvature radius is >= rho: it lies
within about h^2 / (2 rho) of the surface (h = 1/R). A dual vertex is a convex combination of
the crossings of one cube and a face spans dual vertices of neighbouring cubes, so every point
of the mesh is a convex combination of surface points within a ball of diameter sqrt(6) h,
off the surface by at most the sagitta 6 h^2 / (8 rho). In voxels (divide by h):
max distance <= 1.25 h / rho, for both directions; the mean (Chamfer) is held to half that.
The box has flat faces (crossings and dual vertices on them are exact) but its edges are cut:
a dual vertex of an edge or corner cube lies in that cube, so the box's points are within a
cube diagonal (sqrt(3) voxels) of the mesh, and only the strip of edge cubes (about 1/8 of the
area at 32^3, halving with R) contributes error: Chamfer <= 3.2 / R voxels.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import trimesh
from _sparseflex_helpers import (
    MIN_RADIUS,
    SDFS,
    VOLUMES,
    box_edge_points,
    box_sdf,
    directed_edges_paired,
    edge_face_counts,
    sample_on_mesh,
    shell_cubes,
    sphere_sdf,
    surface_samples,
)
from scipy.spatial import cKDTree

from focusing.core.sparseflex.field import (
    SparseFlexField,
    features_from_field,
    field_from_sdf,
    sparseflex_from_features,
)
from focusing.core.sparseflex.flexicubes import extract_mesh


def _bounds(name: str, resolution: int) -> tuple[float, float]:
    """(max distance, Chamfer) bounds in voxels; see the module docstring."""
    if name == "box":
        return math.sqrt(3.0), 3.2 / resolution
    hmax = 1.25 / resolution / MIN_RADIUS[name]
    return hmax, 0.5 * hmax


@pytest.mark.parametrize("resolution", [32, 64])
@pytest.mark.parametrize("name", ["sphere", "torus", "box"])
def test_closed_manifold_outward_and_close(name, resolution):
    fn = SDFS[name]
    field = field_from_sdf(fn, shell_cubes(fn, resolution), resolution, dtype=torch.float64)
    hmax, chamfer_bound = _bounds(name, resolution)
    surf = surface_samples(name, 2000)
    for training in (False, True):
        out = extract_mesh(field, training=training)
        v, f = out.vertices, out.faces
        assert out.num_quads > 0 and f.shape[0] == out.num_quads * (4 if training else 2)
        fn_np = f.numpy()
        # Closed 2-manifold: every edge in exactly two faces, each direction once.
        assert np.all(edge_face_counts(fn_np) == 2)
        assert directed_edges_paired(fn_np)
        tm = trimesh.Trimesh(v.numpy(), fn_np, process=False)
        assert tm.is_watertight and tm.is_winding_consistent
        # Outward: every face normal agrees with the SDF gradient at its centroid.
        c = v[f].mean(1).requires_grad_(True)
        (grad,) = torch.autograd.grad(fn(c).sum(), c)
        normal = torch.linalg.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
        assert torch.all((normal * grad).sum(1) > 0)
        # Volume: positive, off by at most area x max distance.
        area = tm.area
        assert abs(tm.volume - VOLUMES[name]) <= area * hmax / resolution
        # Distances in voxels, both directions, against the analytic surface.
        mesh_to_surf = fn(sample_on_mesh(v, f, 20000)).abs() * resolution
        _, d, _ = trimesh.proximity.closest_point(tm, surf.numpy())
        surf_to_mesh = torch.from_numpy(d) * resolution
        assert mesh_to_surf.max() <= hmax and surf_to_mesh.max() <= hmax
        assert 0.5 * (mesh_to_surf.mean() + surf_to_mesh.mean()) <= chamfer_bound


def test_training_and_inference_share_dual_vertices():
    fn = SDFS["torus"]
    field = field_from_sdf(fn, shell_cubes(fn, 32), 32)
    a, b = extract_mesh(field, training=False), extract_mesh(field, training=True)
    nv = a.vertices.shape[0]
    assert torch.equal(a.vertices, b.vertices[:nv]) and b.vertices.shape[0] == nv + a.num_quads
    assert torch.all(b.vertex_voxel[nv:] == -1) and torch.all(a.vertex_voxel >= 0)
    assert a.l_dev.item() == pytest.approx(b.l_dev.item())
    # A quad centre is the gamma-weighted mean of its 4 dual vertices (unit gamma: plain mean).
    quads_last = b.faces.reshape(-1, 4, 3)[:, :, 0]  # q0..q3 are the first vertex of each tri
    assert torch.allclose(b.vertices[nv:], b.vertices[quads_last].mean(1), atol=1e-6)


def test_dual_vertex_is_beta_weighted_mean_and_l_dev_zero_for_one_crossing_plane():
    # A plane x = const through one column of cubes: all crossings of a cube lie at the same x,
    # every dual vertex too; with equal distances to its 4 crossings (square pattern) L_dev = 0.
    R = 8
    r = torch.arange(R)
    ijk = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    x0 = 0.5 / R * 0.37 + (3 - R / 2) / R  # inside voxel column i = 3
    field = field_from_sdf(lambda p: p[:, 0] - x0, ijk[ijk[:, 0] == 3], R, dtype=torch.float64)
    out = extract_mesh(field)
    assert torch.allclose(out.vertices[:, 0], torch.full_like(out.vertices[:, 0], x0))
    assert out.l_dev.item() < 1e-12
    # Open active set (one column): its rim has boundary edges, nothing is closed over.
    assert np.any(edge_face_counts(out.faces.numpy()) == 1)


def _fd_case(seed: int = 0) -> tuple[dict, callable]:
    R = 8
    coords = shell_cubes(sphere_sdf, R, band=1.2)
    base = field_from_sdf(sphere_sdf, coords, R, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    m, n = base.num_corners, base.num_voxels
    params = {
        "sdf": base.corner_sdf + 0.02 / R * torch.randn(m, generator=g, dtype=torch.float64),
        "deform": 0.3 / R * (torch.rand(m, 3, generator=g, dtype=torch.float64) - 0.5),
        "alpha": 0.5 + torch.rand(n, 8, generator=g, dtype=torch.float64),
        "beta": 0.5 + torch.rand(n, 12, generator=g, dtype=torch.float64),
        "gamma": 0.5 + torch.rand(n, generator=g, dtype=torch.float64),
    }
    w = None

    def loss(p: dict) -> torch.Tensor:
        nonlocal w
        field = SparseFlexField(
            coords=base.coords, resolution=R, corner_coords=base.corner_coords,
            cube_corners=base.cube_corners, corner_sdf=p["sdf"], corner_deform=p["deform"],
            alpha=p["alpha"], beta=p["beta"], gamma=p["gamma"],
        )
        out = extract_mesh(field, training=True)
        if w is None:
            w = torch.randn(
                out.vertices.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64
            )
        return (out.vertices * w).sum() + 10.0 * out.l_dev

    return params, loss


@pytest.mark.parametrize("group", ["sdf", "deform", "alpha", "beta", "gamma"])
def test_gradients_match_finite_differences(group):
    params, loss = _fd_case()
    leaf = {k: v.clone().requires_grad_(k == group) for k, v in params.items()}
    (grad,) = torch.autograd.grad(loss(leaf), leaf[group])
    assert grad.abs().sum() > 0
    g = torch.Generator().manual_seed(3)
    for _ in range(3):
        d = torch.randn(params[group].shape, generator=g, dtype=torch.float64)
        eps = 1e-7 if group in ("sdf", "deform") else 1e-6
        plus = {**params, group: params[group] + eps * d}
        minus = {**params, group: params[group] - eps * d}
        fd = (loss(plus) - loss(minus)) / (2 * eps)
        assert fd.item() == pytest.approx((grad * d).sum().item(), rel=1e-5, abs=1e-8)


def test_gradients_reach_every_feature_channel():
    R = 16
    coords = shell_cubes(sphere_sdf, R)
    feats = features_from_field(field_from_sdf(sphere_sdf, coords, R)).requires_grad_(True)
    out = extract_mesh(sparseflex_from_features(feats, coords, R), training=True)
    (out.vertices.square().sum() + out.l_dev).backward()
    g = feats.grad.abs()
    for chans in (slice(0, 8), slice(8, 32), slice(32, 40), slice(40, 52), slice(52, 53)):
        assert g[:, chans].sum() > 0


def test_box_edges_sharpen_when_deformation_and_weights_are_fitted():
    # Unit weights cut the box's edges (a dual vertex is the mean of crossings on two faces).
    # Optimising deformation and weights (SDF kept exact) against the analytic surface, two-sided
    # (|SDF| at the vertices, and box samples incl. its edges to their nearest vertex), must pull
    # the mesh onto the edges: the edge points' distance to the mesh drops below 0.1 voxel mean.
    R = 32
    coords = shell_cubes(box_sdf, R)
    field0 = field_from_sdf(box_sdf, coords, R)
    edges = box_edge_points(100)

    def edge_distance(out) -> np.ndarray:
        tm = trimesh.Trimesh(out.vertices.detach().numpy(), out.faces.numpy(), process=False)
        return trimesh.proximity.closest_point(tm, edges.numpy())[1] * R

    before = edge_distance(extract_mesh(field0))
    feats = features_from_field(field0)
    topo = (field0.corner_coords, field0.cube_corners)
    raw = feats[:, 8:].clone().requires_grad_(True)
    opt = torch.optim.Adam([raw], lr=0.05)
    targets = torch.cat([surface_samples("box", 3000, seed=5), edges[::2]]).float()
    for _ in range(40):
        field = sparseflex_from_features(
            torch.cat([feats[:, :8], raw], 1), coords, R, topology=topo
        )
        v = extract_mesh(field, training=True).vertices
        idx = torch.from_numpy(cKDTree(v.detach().numpy()).query(targets.numpy())[1])
        loss = (box_sdf(v).square().mean() + (v[idx] - targets).square().sum(1).mean()) * R * R
        opt.zero_grad()
        loss.backward()
        opt.step()
    for training in (False, True):
        out = extract_mesh(field, training=training)
        after = edge_distance(out)
        assert before.mean() > 0.25 and after.mean() < 0.1 and after.max() < 0.35
        assert trimesh.Trimesh(
            out.vertices.detach().numpy(), out.faces.numpy(), process=False
        ).is_watertight
        # Faces stay on the box: no vertex drifted off the surface.
        assert (box_sdf(out.vertices).abs() * R).max() < 0.2
