"""Mesh loading, validation, normalisation and atomic saving, on real files (good and bad)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import trimesh

from focusing.core.geometry import mesh as mesh_mod
from focusing.core.geometry.mesh import (
    Mesh,
    MeshError,
    apply_normalization,
    load_mesh,
    normalize_mesh,
    save_mesh,
    validate_mesh,
)

from meshdata import mesh_file

BAD = Path(__file__).resolve().parents[1] / "data" / "bad_meshes"

# file -> words the error must contain (besides the file name)
BAD_FILES = {
    "empty.obj": "empty",
    "empty_solid.stl": "no triangles",
    "garbage.off": "could not parse as OFF",
    "truncated.off": "truncated: header says 3 vertices, file has 2",
    "truncated_binary.stl": "truncated",
    "truncated_binary.ply": "could not parse as PLY",
    "ply_named.obj": "looks like PLY",
    "triangle.xyz": "unknown format '.xyz'",
    "point_cloud.off": "no faces",
    "vertices_only.ply": "point cloud",
    "nan_vertex.off": "NaN or infinite",
    "inf_vertex.off": "NaN or infinite",
    "index_past_end.off": "outside the range of its vertices",
    "index_past_end.obj": "outside the range of its vertices",
    "negative_index.off": "outside the range of its vertices",
    "zero_area.off": "area is zero",
    "zero_area_collinear.obj": "area is zero",
}


def test_every_bad_file_has_a_case():
    assert sorted(p.name for p in BAD.iterdir()) == sorted(BAD_FILES)


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_file_raises_clear_error(name):
    path = BAD / name
    with pytest.raises(MeshError) as err:
        load_mesh(path)
    msg = str(err.value)
    assert str(path) in msg, msg
    assert BAD_FILES[name].lower() in msg.lower(), msg
    assert isinstance(err.value, ValueError)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(MeshError, match="does not exist") as err:
        load_mesh(tmp_path / "nope.obj")
    assert "nope.obj" in str(err.value)
    with pytest.raises(MeshError, match="not a regular file"):
        load_mesh(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read files without read permission")
def test_unreadable_file(tmp_path):
    p = tmp_path / "locked.off"
    shutil.copy(mesh_file("fandisk"), p)
    p.chmod(0)
    with pytest.raises(MeshError, match="cannot read"):
        load_mesh(p)


def test_in_memory_faults_are_reported():
    v = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]])
    with pytest.raises(MeshError, match="negative vertex index"):
        validate_mesh(Mesh(v, np.array([[0, 1, -1]])))
    with pytest.raises(MeshError, match="only 3 vertices"):
        validate_mesh(Mesh(v, np.array([[0, 1, 3]])))
    with pytest.raises(MeshError, match="no faces"):
        validate_mesh(Mesh(v, np.zeros((0, 3))))
    with pytest.raises(MeshError, match="shape"):
        validate_mesh(Mesh(v, np.array([[0, 1, 2, 0]])))


def _convert(src: Path, dst: Path) -> None:
    """What a CLI `convert` command does: load then save."""
    save_mesh(load_mesh(src), dst)


def test_cli_style_convert_writes_nothing_on_bad_input(tmp_path):
    out = tmp_path / "out.ply"
    with pytest.raises(MeshError):
        _convert(BAD / "nan_vertex.off", out)
    assert list(tmp_path.iterdir()) == []
    _convert(mesh_file("fandisk"), out)
    assert out.exists()


# The smaller real meshes (the large ones cost seconds to parse and test nothing new).
@pytest.mark.parametrize("name", ["fandisk", "couplingdown", "camel", "blade", "elephant-with-holes"])
def test_real_meshes_load_normalised(name):
    raw = trimesh.load(mesh_file(name), process=False)
    m = load_mesh(mesh_file(name))
    assert m.vertices.dtype == np.float64 and m.faces.dtype == np.int64
    assert m.faces.shape == raw.faces.shape and np.array_equal(m.faces, raw.faces)
    lo, hi = m.bounds
    np.testing.assert_allclose((lo + hi) / 2, 0.0, atol=1e-12)
    assert abs((hi - lo).max() - 1.0) < 1e-12
    # Independent: the normalisation is a similarity of the raw vertices.
    rlo, rhi = raw.vertices.min(0), raw.vertices.max(0)
    expect = (raw.vertices - (rlo + rhi) / 2) / (rhi - rlo).max()
    np.testing.assert_allclose(m.vertices, expect, atol=1e-12)
    assert m.source == mesh_file(name)


def test_normalisation_transfers_to_another_mesh():
    raw = load_mesh(mesh_file("blade"), normalize=False)  # far from the unit box
    norm, center, scale = normalize_mesh(raw)
    assert abs(scale - 1.0) > 0.5 and np.abs(center).max() > 1.0
    # A second mesh in the same frame (a shifted copy of the raw one) maps with the same transform.
    other = Mesh(raw.vertices + np.array([1.0, 2.0, 3.0]), raw.faces)
    mapped = apply_normalization(other, center, scale)
    shift = np.broadcast_to(np.array([1.0, 2.0, 3.0]) * scale, norm.vertices.shape)
    np.testing.assert_allclose(mapped.vertices - norm.vertices, shift, atol=1e-12)
    np.testing.assert_allclose(apply_normalization(raw, center, scale).vertices, norm.vertices)


def test_helpers_against_trimesh():
    m = load_mesh(mesh_file("fandisk"))
    tm = m.to_trimesh()
    np.testing.assert_allclose(m.face_areas, tm.area_faces, rtol=1e-10, atol=1e-16)
    np.testing.assert_allclose(m.face_normals, tm.face_normals, atol=1e-9)
    v, f = m.torch()
    assert v.dtype.is_floating_point and v.dtype.itemsize == 4 and tuple(v.shape) == m.vertices.shape
    assert str(f.dtype) == "torch.int64" and tuple(f.shape) == m.faces.shape


@pytest.mark.parametrize("ext", [".obj", ".ply", ".off", ".stl", ".glb"])
def test_save_load_round_trip(tmp_path, ext):
    m = load_mesh(mesh_file("couplingdown"))
    p = save_mesh(m, tmp_path / f"m{ext}")
    back = load_mesh(p, normalize=False)
    # STL stores triangle soup: compare triangles (as float32 for the binary formats).
    np.testing.assert_allclose(back.triangles, m.triangles, atol=1e-6)
    assert [q.name for q in tmp_path.iterdir()] == [f"m{ext}"]  # no temp file left


def test_save_is_atomic(tmp_path, monkeypatch):
    m = load_mesh(mesh_file("fandisk"))
    target = tmp_path / "keep.ply"
    save_mesh(m, target)
    before = target.read_bytes()

    def boom(src, dst):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(mesh_mod.os, "replace", boom)
    small = Mesh(m.vertices[:3], np.array([[0, 1, 2]]))
    with pytest.raises(OSError, match="simulated"):
        save_mesh(small, target)
    assert target.read_bytes() == before  # old file intact
    assert [q.name for q in tmp_path.iterdir()] == ["keep.ply"]  # temp removed
    with pytest.raises(OSError):
        save_mesh(small, tmp_path / "new.ply")
    assert not (tmp_path / "new.ply").exists()


def test_save_rejects_bad_targets(tmp_path):
    m = load_mesh(mesh_file("fandisk"))
    with pytest.raises(MeshError, match="unknown format"):
        save_mesh(m, tmp_path / "m.xyz")
    with pytest.raises(MeshError, match="does not exist"):
        save_mesh(m, tmp_path / "no" / "m.ply")
    assert list(tmp_path.iterdir()) == []


def test_glb_scene_is_concatenated_with_transforms(tmp_path):
    a = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    b = trimesh.creation.icosphere(subdivisions=1, radius=0.5)
    shift = trimesh.transformations.translation_matrix([3.0, 0.0, 0.0])
    scene = trimesh.Scene()
    scene.add_geometry(a, node_name="box")
    scene.add_geometry(b, node_name="ball", transform=shift)
    p = tmp_path / "scene.glb"
    p.write_bytes(scene.export(file_type="glb"))
    m = load_mesh(p, normalize=False)
    assert m.num_faces == len(a.faces) + len(b.faces)
    # Independent: the union of both meshes' triangles, the sphere moved by +3 in x.
    expect = np.concatenate([a.triangles, b.triangles + np.array([3.0, 0, 0])])
    key = lambda t: np.round(np.sort(t.reshape(len(t), -1), axis=1), 5)  # noqa: E731
    got, exp = key(m.triangles), key(expect)
    assert np.array_equal(got[np.lexsort(got.T)], exp[np.lexsort(exp.T)])
    np.testing.assert_allclose(m.bounds, [[-0.5, -0.5, -0.5], [3.5, 0.5, 0.5]], atol=1e-6)
