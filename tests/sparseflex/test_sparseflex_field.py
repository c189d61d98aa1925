"""SparseFlex field: feature layout, shared-corner averaging (against a brute-force dict),
consistency term, constructors, and the signed distance to real meshes (against trimesh)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
import torch
import trimesh
from _sparseflex_helpers import real_mesh, sphere_sdf

from focusing.core.geometry.distance import mesh_signed_distance
from focusing.core.sparse.tensor import SparseTensor
from focusing.core.sparseflex.field import (
    ALPHA_CHANNELS,
    BETA_CHANNELS,
    DEFORM_CHANNELS,
    FEATURE_CHANNELS,
    GAMMA_CHANNELS,
    SDF_CHANNELS,
    corner_topology,
    features_from_field,
    field_from_sdf,
    sparseflex_from_features,
)


def _random_voxels(n: int, resolution: int, batches: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # A compact blob so that many corners are shared.
    c = torch.randint(0, 6, (3 * n, 3), generator=g) + resolution // 2 - 3
    b = torch.randint(0, batches, (3 * n, 1), generator=g)
    coords = torch.unique(torch.cat([b, c], 1), dim=0)
    return coords[torch.randperm(len(coords), generator=g)[:n]]


def test_channel_layout_is_a_partition():
    chans = [SDF_CHANNELS, DEFORM_CHANNELS, ALPHA_CHANNELS, BETA_CHANNELS, GAMMA_CHANNELS]
    covered = [i for s in chans for i in range(FEATURE_CHANNELS)[s]]
    assert covered == list(range(FEATURE_CHANNELS)) and FEATURE_CHANNELS == 8 + 24 + 8 + 12 + 1


def test_shared_corners_average_against_brute_force():
    R = 16
    coords = _random_voxels(120, R, batches=2)
    feats = torch.randn(len(coords), FEATURE_CHANNELS, dtype=torch.float64) * 3
    field = sparseflex_from_features(feats, coords, R)
    # Brute force: a dict from (b, i, j, k) to every voxel's prediction for that corner.
    sdf_acc, def_acc = defaultdict(list), defaultdict(list)
    for n, (b, x, y, z) in enumerate(coords.tolist()):
        for c in range(8):
            key = (b, x + (c >> 2 & 1), y + (c >> 1 & 1), z + (c & 1))
            sdf_acc[key].append(feats[n, c].item())
            def_acc[key].append(torch.tanh(feats[n, 8 + 3 * c : 11 + 3 * c]) * 0.5 / R)
    assert field.num_corners == len(sdf_acc)
    for m, key in enumerate(map(tuple, field.corner_coords.tolist())):
        assert field.corner_sdf[m].item() == pytest.approx(np.mean(sdf_acc[key]), abs=1e-12)
        assert torch.allclose(field.corner_deform[m], torch.stack(def_acc[key]).mean(0), atol=1e-12)
    # Each voxel's corner index points at the corner with its own coordinates.
    for n, (b, x, y, z) in enumerate(coords.tolist()):
        for c in range(8):
            want = [b, x + (c >> 2 & 1), y + (c >> 1 & 1), z + (c & 1)]
            assert field.corner_coords[field.cube_corners[n, c]].tolist() == want


def test_activations_bounds_and_zero_point():
    R = 8
    coords = _random_voxels(30, R, batches=1)
    zero = sparseflex_from_features(torch.zeros(len(coords), FEATURE_CHANNELS), coords, R)
    assert torch.all(zero.corner_deform == 0)
    for w in (zero.alpha, zero.beta, zero.gamma):
        assert torch.allclose(w, torch.ones_like(w))
    big = sparseflex_from_features(torch.randn(len(coords), FEATURE_CHANNELS) * 1e3, coords, R)
    assert big.corner_deform.abs().max() <= 0.5 / R + 1e-7
    assert all(bool((w > 0).all()) for w in (big.alpha, big.beta, big.gamma))
    assert big.alpha.shape == (len(coords), 8) and big.beta.shape == (len(coords), 12)
    assert big.gamma.shape == (len(coords),)


def test_consistency_loss_brute_force_and_round_trip():
    R = 16
    coords = _random_voxels(80, R, batches=2, seed=1)
    feats = torch.randn(len(coords), FEATURE_CHANNELS, dtype=torch.float64)
    field = sparseflex_from_features(feats, coords, R)
    gap_sdf = feats[:, :8] - field.corner_sdf[field.cube_corners]
    gap_def = (
        torch.tanh(feats[:, 8:32]).reshape(-1, 8, 3) * 0.5 / R
        - field.corner_deform[field.cube_corners]
    ) * R
    want = gap_sdf.square().mean() + gap_def.square().sum(-1).mean()
    assert field.consistency_loss().item() == pytest.approx(want.item(), rel=1e-12)
    assert field.consistency_loss() > 0
    # Features rebuilt from the averaged field are consistent and reproduce it.
    again = sparseflex_from_features(features_from_field(field), coords, R)
    assert again.consistency_loss().item() < 1e-18
    assert torch.allclose(again.corner_sdf, field.corner_sdf, atol=1e-12)
    assert torch.allclose(again.corner_deform, field.corner_deform, atol=1e-9)
    for a, b in ((again.alpha, field.alpha), (again.beta, field.beta), (again.gamma, field.gamma)):
        assert torch.allclose(a, b, atol=1e-9)


def test_accepts_sparse_tensor_and_topology_reuse():
    R = 16
    coords = _random_voxels(50, R, batches=2, seed=2)
    feats = torch.randn(len(coords), FEATURE_CHANNELS)
    a = sparseflex_from_features(SparseTensor(coords, feats, R))
    b = sparseflex_from_features(feats, coords, R, topology=corner_topology(coords, R))
    assert a.resolution == R and torch.equal(a.coords, coords)
    assert torch.equal(a.cube_corners, b.cube_corners) and torch.equal(a.corner_sdf, b.corner_sdf)


def test_select_keeps_averaged_corners():
    R = 16
    coords = _random_voxels(60, R, batches=1, seed=3)
    field = sparseflex_from_features(torch.randn(len(coords), FEATURE_CHANNELS), coords, R)
    idx = torch.arange(0, len(coords), 3)
    sub = field.select(idx)
    assert torch.equal(sub.coords, coords[idx])
    assert torch.equal(sub.corner_sdf[sub.cube_corners], field.corner_sdf[field.cube_corners[idx]])
    assert torch.equal(sub.alpha, field.alpha[idx])


def test_bad_input_raises():
    R = 8
    coords = _random_voxels(10, R, batches=1)
    with pytest.raises(ValueError, match="53"):
        sparseflex_from_features(torch.zeros(len(coords), 52), coords, R)
    with pytest.raises(ValueError, match="duplicates"):
        sparseflex_from_features(torch.zeros(2, 53), torch.tensor([[0, 1, 1, 1], [0, 1, 1, 1]]), R)
    with pytest.raises(ValueError, match="out of range"):
        sparseflex_from_features(torch.zeros(1, 53), torch.tensor([[0, 8, 0, 0]]), R)
    with pytest.raises(ValueError, match="coords and resolution"):
        sparseflex_from_features(torch.zeros(1, 53))
    with pytest.raises(ValueError, match="integers"):
        field_from_sdf(sphere_sdf, torch.zeros(3, 3), R)


def test_field_from_sdf_is_exact_at_corners():
    R = 16
    coords = _random_voxels(40, R, batches=1, seed=4)[:, 1:]
    field = field_from_sdf(sphere_sdf, coords, R, dtype=torch.float64)
    pos = field.corner_coords[:, 1:].double() / R - 0.5
    assert torch.equal(field.corner_sdf, sphere_sdf(pos))
    assert torch.all(field.corner_deform == 0) and torch.all(field.alpha == 1)


def test_mesh_signed_distance_matches_brute_force_on_a_closed_mesh():
    mesh = real_mesh("fandisk")
    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    rng = np.random.default_rng(0)
    pts, _ = trimesh.sample.sample_surface(tm, 60, seed=1)
    pts = pts + rng.normal(scale=0.02, size=pts.shape)  # within ~2 voxels at R = 64
    mine = mesh_signed_distance(mesh, pts)
    # Brute force: the closest point on every face (trimesh), the minimum per point.
    tri = tm.triangles
    best = np.full(len(pts), np.inf)
    for i, p in enumerate(pts):
        q = trimesh.triangles.closest_point(tri, np.repeat(p[None], len(tri), axis=0))
        best[i] = np.linalg.norm(q - p, axis=1).min()
    assert np.allclose(np.abs(mine), best, rtol=0, atol=1e-12)
    # Sign: trimesh's inside test (ray parity), positive inside in its convention.
    inside = tm.contains(pts)
    assert np.array_equal(mine < 0, inside)


def test_field_from_mesh_sign_on_an_open_mesh_follows_face_normals():
    mesh = real_mesh("mannequin-devil")
    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    pts, fid = trimesh.sample.sample_surface(tm, 300, seed=2)
    off = 0.25 / 64  # a quarter voxel off the surface, both sides
    n = tm.face_normals[fid]
    d_out = mesh_signed_distance(mesh, pts + off * n)
    d_in = mesh_signed_distance(mesh, pts - off * n)
    # Nearly all points keep the nearest face's side (a few land nearer another part).
    assert (d_out > 0).mean() > 0.97 and (d_in < 0).mean() > 0.97
    assert np.all(np.abs(d_out) <= off + 1e-12) and np.all(np.abs(d_in) <= off + 1e-12)
