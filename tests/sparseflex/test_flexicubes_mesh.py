"""Sparse FlexiCubes on fields built from real meshes (examples/meshes): open meshes keep their
holes open (no lid where the active voxels end), closed ones come out watertight; sub-sets
and batches of cubes mesh consistently."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pytest
import torch
import trimesh
from _sparseflex_helpers import boundary_points, edge_face_counts, real_mesh
from scipy.spatial import cKDTree

from focusing.core.geometry.voxelize import dilate_voxels, surface_voxels
from focusing.core.geometry.distance import mesh_signed_distance
from focusing.core.sparseflex.field import field_from_mesh
from focusing.core.sparseflex.flexicubes import extract_mesh


@lru_cache(maxsize=None)
def _shell_field(name: str, resolution: int, radius: int = 1):
    """(mesh, field on its surface voxels dilated by `radius`); treat as read-only."""
    mesh = real_mesh(name)
    coords = dilate_voxels(surface_voxels(mesh, resolution), resolution, radius=radius)
    return mesh, field_from_mesh(mesh, coords, resolution)


@pytest.mark.parametrize("name,resolution", [("blade", 64), ("mannequin-devil", 32)])
def test_open_mesh_keeps_its_holes_open(name, resolution):
    # The shell is the surface voxels dilated once, so the zero set can reach at most
    # (radius + 1) voxels past the input's boundary (the nearest face's plane continued) and
    # every active point is within (radius + 1) * sqrt(3) voxels of the input surface.
    mesh, field = _shell_field(name, resolution)
    out = extract_mesh(field)
    v, f = out.vertices.numpy().astype(np.float64), out.faces.numpy()
    assert len(f) > 0
    counts = edge_face_counts(f)
    assert np.any(counts == 1), "the extraction must have an open boundary"
    reach = 2 * math.sqrt(3) / resolution
    # No lid: no face lies far from the input surface.
    dist = np.abs(mesh_signed_distance(mesh, v[f].mean(1)))
    assert dist.max() <= reach
    # The input's holes stay open: every point of its boundary is near a boundary of ours (a
    # lid across a hole would leave the hole's rim inside our surface, far from any boundary).
    step = 0.1 / resolution
    rim_in = boundary_points(mesh.vertices, mesh.faces, step)
    rim_out = boundary_points(v, f, step)
    assert len(rim_in) > 0 and len(rim_out) > 0
    assert cKDTree(rim_out).query(rim_in)[0].max() <= reach
    # Nearly all of the surface sits on the input (flanges past the rim are the exception).
    assert np.mean(dist * resolution < 0.5) > 0.95


def test_closed_real_mesh_is_watertight_and_close():
    mesh, field = _shell_field("fandisk", 32)
    d = None
    for training in (False, True):
        out = extract_mesh(field, training=training)
        f = out.faces.numpy()
        assert np.all(edge_face_counts(f) == 2)
        tm = trimesh.Trimesh(out.vertices.numpy(), f, process=False)
        assert tm.is_watertight and tm.is_winding_consistent and tm.volume > 0
        src = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
        assert tm.volume == pytest.approx(src.volume, rel=0.02)
        if d is None:  # the dual vertices are shared by both modes
            d = np.abs(mesh_signed_distance(mesh, out.vertices.numpy())) * 32
        # Exact distances sampled at the corners; sharp CAD edges are cut by under a voxel.
        assert np.median(d) < 0.05 and d.max() < 1.0


def test_subset_of_cubes_gives_a_subset_of_the_faces():
    # What the output-stage selectors rely on: meshing a subset of the cubes gives exactly the
    # faces of the full mesh whose quads are surrounded by selected cubes, same positions.
    _, field = _shell_field("fandisk", 32)
    full = extract_mesh(field)
    keep = field.coords[:, 1] < 16  # half the object
    part = extract_mesh(field.select(keep))
    assert 0 < part.faces.shape[0] < full.faces.shape[0]
    def tri_keys(out):
        t = out.vertices[out.faces].reshape(-1, 9).numpy().round(7)
        return {tuple(r) for r in t}
    assert tri_keys(part) <= tri_keys(full)
    # The cut leaves an open boundary, not a lid.
    assert np.any(edge_face_counts(part.faces.numpy()) == 1)


def test_batch_entries_mesh_independently():
    _, field_a = _shell_field("fandisk", 16)
    _, field_b = _shell_field("couplingdown", 16)
    coords = torch.cat([field_a.coords, field_b.coords + torch.tensor([1, 0, 0, 0])])
    both = field_from_mesh([real_mesh("fandisk"), real_mesh("couplingdown")], coords, 16)
    out = extract_mesh(both)
    for b, single in ((0, field_a), (1, field_b)):
        v, f = out.mesh(b)
        ref = extract_mesh(single)
        assert torch.allclose(v, ref.vertices, atol=1e-6) and torch.equal(f, ref.faces)
