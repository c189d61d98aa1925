"""Render invariance, the property that makes carving safe: a SparseFlex field fitted to a real
mesh (corner SDF of the mesh), meshed by FlexiCubes once from every voxel and once from a
selection, both rendered with the selection's camera, agree on >= 99.5% of the ground-truth
mask pixels (hit/miss the same, depth within one voxel). Tested at the field's resolution."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from _carving_helpers import active_xyz, mesh, voxels_of

from focusing.core.geometry.camera import orbit_cameras
from focusing.core.geometry.raycast import raycast
from focusing.core.plugin_system import get_registry
from focusing.core.sparseflex.field import field_from_mesh
from focusing.core.sparseflex.flexicubes import extract_mesh

RES, SIZE, VIEWS = 48, 192, 2
MESHES = ["fandisk", "mannequin-devil"]  # closed, open


@functools.lru_cache(maxsize=None)
def fitted(name: str):
    xyz = active_xyz(name, RES)
    field = field_from_mesh(mesh(name), xyz, RES)
    return xyz, field, extract_mesh(field)


def render(m, cam):
    return raycast(m.vertices.double(), m.faces, cam)


def agreement(full, sub, gt) -> float:
    """Fraction of the ground-truth mask pixels where both renders agree."""
    a, b = full.depth > 0, sub.depth > 0
    same = (a == b) & (~a | ((full.depth - b.to(full.depth.dtype) * sub.depth).abs() <= 1.0 / RES))
    fg = gt.depth > 0
    return float(same[fg].float().mean())


def selector(name, **params):
    return get_registry("voxel_selector").get(name)(**params)


@pytest.mark.parametrize("shape", MESHES)
@pytest.mark.parametrize("name", ["depth-carving", "depth-carving-tight"])
def test_carving_keeps_the_render(shape, name):
    xyz, field, full_mesh = fitted(shape)
    m = mesh(shape)
    for cam in orbit_cameras(VIEWS, width=SIZE, height=SIZE, rng=21):
        gt = raycast(m.vertices, m.faces, cam)
        sel = selector(name).select(voxels_of(xyz, RES), cam, gt, np.random.default_rng(0))
        assert sel.index.numel() < xyz.shape[0] * 0.8  # it does carve
        sub_mesh = extract_mesh(field.select(sel.index))
        assert agreement(render(full_mesh, sel.camera), render(sub_mesh, sel.camera), gt) >= 0.995


@pytest.mark.parametrize("shape", MESHES)
def test_zoom_keeps_the_render_in_its_view(shape):
    xyz, field, full_mesh = fitted(shape)
    m = mesh(shape)
    vox = voxels_of(xyz, RES)
    for i, cam in enumerate(orbit_cameras(VIEWS, width=SIZE, height=SIZE, rng=22)):
        gt = raycast(m.vertices, m.faces, cam)
        carved = selector("depth-carving").select(vox, cam, gt, None).index
        z = selector("zoom", n_min=100, n_max=300).select(
            voxels_of(xyz[carved], RES), cam, gt, np.random.default_rng(i)
        )
        rows = carved[z.index]
        assert z.camera_changed and rows.numel() < carved.numel()
        zgt = raycast(m.vertices, m.faces, z.camera)  # the trainer re-renders for the new camera
        assert (zgt.depth > 0).sum() > 0.2 * SIZE * SIZE  # the zoomed view is mostly surface
        sub_mesh = extract_mesh(field.select(rows))
        assert agreement(render(full_mesh, z.camera), render(sub_mesh, z.camera), zgt) >= 0.995
