"""Mesh loading, validation, normalisation and atomic saving, on real files (good and bad)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import trimesh

from focusing.core.io import check_output_path
from focusing.core.geometry import meshio as mesh_mod
from focusing.core.geometry.mesh import Mesh, apply_normalization, normalize_mesh
from focusing.core.geometry.meshio import find_mesh_files, load_mesh, save_mesh
from focusing.core.geometry.validation import MeshError, surface_bounds, usable_faces, validate_mesh

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
@pytest.mark.parametrize("name",
                         ["fandisk", "couplingdown", "camel", "blade", "elephant-with-holes"])
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
    assert (v.dtype.is_floating_point and v.dtype.itemsize == 4
            and tuple(v.shape) == m.vertices.shape)
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


# ------------------------------------------------------------ what the formats allow (accepted)

SQUARE_V = "0 0 0\n1 0 0\n1 1 0\n0 1 0\n0.5 1.5 0\n"


def _write(tmp_path, name: str, content: str | bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return p


def test_off_mixing_triangles_and_polygons_is_fanned(tmp_path):
    # A quad, a triangle and a pentagon; COFF-style colours after the indices.
    off = "OFF\n5 3 0\n" + SQUARE_V + "4 0 1 2 3 255 0 0\n3 0 1 2\n5 0 1 2 4 3\n"
    m = load_mesh(_write(tmp_path, "mixed.off", off), normalize=False)
    assert m.faces.tolist() == [[0, 1, 2], [0, 2, 3], [0, 1, 2], [0, 1, 2], [0, 2, 4], [0, 4, 3]]


def test_off_variants_are_read(tmp_path):
    # Counts on the header line, COFF vertex colours, comments (one not UTF-8), CRLF, a BOM.
    body = ("COFF 3 1 0 # counts here\r\n# caf\xe9\r\n"
            "0 0 0 1 0 0 1\r\n1 0 0 0 1 0 1\r\n0 1 0 0 0 1 1\r\n3 0 1 2\r\n")
    data = b"\xef\xbb\xbf" + body.encode("latin-1")
    m = load_mesh(_write(tmp_path, "variant.off", data), normalize=False)
    np.testing.assert_array_equal(m.vertices, [[0, 0, 0], [1, 0, 0], [0, 1, 0]])
    assert m.faces.tolist() == [[0, 1, 2]]
    # The OFF keyword is optional.
    m = load_mesh(_write(tmp_path, "bare.off", "3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n"), False)
    assert m.num_faces == 1


def test_obj_tabs_bom_crlf_slashes_negative_indices_and_quads(tmp_path):
    obj = (
        "\ufeff# made by hand\r\nmtllib x.mtl\r\no thing\r\n"
        "v\t0 0 0\r\nv  1\t0 0\r\nv 1 1 0\r\nv 0 1 0\r\nvt 0 0\r\nvn 0 0 1\r\n"
        "f 1/1/1 2/1/1 3/1/1\r\nf -4//1 -2//1 -1//1\r\nf 1/1 2/1 3/1 4/1\r\nusemtl red\r\n"
        "f 1 2 \\\r\n 3\r\n"
    )
    m = load_mesh(_write(tmp_path, "hand.obj", obj), normalize=False)
    np.testing.assert_array_equal(m.vertices, [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]])
    assert m.faces.tolist() == [[0, 1, 2], [0, 2, 3], [0, 1, 2], [0, 2, 3], [0, 1, 2]]


_PLY_HEAD = ("ply\nformat ascii 1.0\nelement vertex 4\n"
             "property float x\nproperty float y\nproperty float z\n")
_PLY_V = "0 0 0\n1 0 0\n0 1 0\n1 1 0\n"


def test_ply_quads_and_triangle_strips(tmp_path):
    quad = (_PLY_HEAD + "element face 1\nproperty list uchar int vertex_indices\nend_header\n"
            + _PLY_V + "4 0 1 3 2\n")
    m = load_mesh(_write(tmp_path, "quad.ply", quad), normalize=False)
    assert m.faces.tolist() == [[0, 1, 3], [3, 2, 0]]
    # One strip 0 1 2 3, a restart (-1), then 2 3 0: winding alternates along a strip.
    strip = (_PLY_HEAD + "element tristrips 1\nproperty list int int vertex_indices\nend_header\n"
             + _PLY_V + "8 0 1 2 3 -1 2 3 0\n")
    m = load_mesh(_write(tmp_path, "strip.ply", strip), normalize=False)
    assert m.faces.tolist() == [[0, 1, 2], [2, 1, 3], [2, 3, 0]]
    # The same strips in binary PLY.
    head = ("ply\nformat binary_little_endian 1.0\nelement vertex 4\nproperty float x\n"
            "property float y\nproperty float z\nelement tristrips 1\n"
            "property list int int vertex_indices\nend_header\n").encode()
    verts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], "<f4").tobytes()
    lists = np.array([8, 0, 1, 2, 3, -1, 2, 3, 0], "<i4").tobytes()
    m = load_mesh(_write(tmp_path, "strip_bin.ply", head + verts + lists), normalize=False)
    assert m.faces.tolist() == [[0, 1, 2], [2, 1, 3], [2, 3, 0]]


@pytest.mark.parametrize("ascii_stl", [True, False])
def test_stl_ascii_and_binary(tmp_path, ascii_stl):
    box = trimesh.creation.box()
    stl = trimesh.exchange.stl
    data = stl.export_stl_ascii(box) if ascii_stl else stl.export_stl(box)
    m = load_mesh(_write(tmp_path, "box.stl", data), normalize=False)
    assert m.num_faces == 12
    np.testing.assert_allclose(m.face_areas.sum(), 6.0, rtol=1e-6)


# ------------------------------------------------------- faults named for what they are (rejected)


@pytest.mark.parametrize(
    "name, content, words",
    [
        ("short_faces.off", "OFF\n3 2 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n",
         "truncated: header says 2 faces, file has 1"),
        ("short_verts.off", "OFF\n4 1 0\n0 0 0\n1 0 0\n0 1 0\n",
         "truncated: header says 4 vertices, file has 3"),
        ("short_face.off", "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1\n",
         "truncated: line 6: face says 3 corners, lists 2"),
        ("extra.off", "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n3 2 1 0\n", "1 more lines"),
        ("binary.off", "OFF BINARY\n", "binary OFF is not supported"),
        ("text_vertex.off", "OFF\n3 1 0\n0 0 0\n1 zero 0\n0 1 0\n3 0 1 2\n", "line 4"),
        ("edge_face.off", "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n2 0 1\n", "at least 3 corners"),
        ("lines.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nl 1 2 3\n", "holds only lines"),
        ("header_only.off", "OFF\n", "truncated: the header has no vertex and face counts"),
        ("fraction.off", "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2.5\n", "line 6"),
        ("huge_index.off", "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 99999999999999999999\n",
         "beyond 64 bits"),
        ("huge_index.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 99999999999999999999\n",
         "beyond 64 bits"),
        ("comments.obj", "# only a comment\n\n", "no vertices or faces"),
        ("points.obj", "v 0 0 0\nv 1 0 0\np 1 2\n", "point cloud"),
        ("zero_index.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n", "indices start at 1"),
        ("past_relative.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf -1 -2 -4\n", "negative vertex index"),
        ("words.obj", "this is not a mesh\n", "no `v` or `f` statements"),
        ("strips_empty.ply", _PLY_HEAD + "element tristrips 1\n"
         "property list int int vertex_indices\nend_header\n" + _PLY_V + "2 0 1\n",
         "triangle strips hold no triangle"),
        ("short.ply", _PLY_HEAD + "element face 2\nproperty list uchar int vertex_indices\n"
         "end_header\n" + _PLY_V + "3 0 1 2\n",
         "truncated: header says 2 face elements, file has 1"),
        ("edges.ply", _PLY_HEAD + "element edge 1\nproperty int vertex1\nproperty int vertex2\n"
         "end_header\n" + _PLY_V + "0 1\n", "edge elements"),
        ("past_end.ply", _PLY_HEAD + "element face 1\nproperty list uchar int vertex_indices\n"
         "end_header\n" + _PLY_V + "3 0 1 9\n", "outside the range of its vertices"),
    ],
)
def test_malformed_text_files_are_named(tmp_path, name, content, words):
    path = _write(tmp_path, name, content)
    with pytest.raises(MeshError) as err:
        load_mesh(path)
    assert str(path) in str(err.value) and words in str(err.value), str(err.value)


@pytest.mark.parametrize("suffix", [".obj", ".off", ".ply", ".stl", ".glb"])
def test_binary_garbage_and_gzip_with_a_mesh_suffix(tmp_path, suffix):
    garbage = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    path = _write(tmp_path, f"junk{suffix}", b"\x00\x01" + garbage)
    with pytest.raises(MeshError) as err:
        load_mesh(path)
    assert str(path) in str(err.value)
    import gzip

    gz = _write(tmp_path, f"packed{suffix}", gzip.compress(mesh_file("fandisk").read_bytes()))
    with pytest.raises(MeshError, match="gzip-compressed"):
        load_mesh(gz)


def test_nan_in_binary_ply(tmp_path):
    m = trimesh.creation.box()
    m.vertices[3] = [np.nan, 0, 0]
    path = _write(tmp_path, "nan.ply", m.export(file_type="ply"))
    with pytest.raises(MeshError, match="NaN or infinite"):
        load_mesh(path)


def test_path_faults_are_named(tmp_path):
    loop = tmp_path / "loop.obj"
    loop.symlink_to(loop)
    with pytest.raises(MeshError, match="symlink loop"):
        load_mesh(loop)
    broken = tmp_path / "broken.obj"
    broken.symlink_to(tmp_path / "gone.obj")
    with pytest.raises(MeshError, match="broken symlink"):
        load_mesh(broken)
    folder = tmp_path / "x.obj"
    folder.mkdir()
    with pytest.raises(MeshError, match="is a directory"):
        load_mesh(folder)
    fifo = tmp_path / "pipe.off"
    os.mkfifo(fifo)
    with pytest.raises(MeshError, match="not a regular file"):
        load_mesh(fifo)
    linked = tmp_path / "linked.off"
    linked.symlink_to(mesh_file("fandisk"))
    assert load_mesh(linked).num_faces == 12946  # a good link is just the file


# ------------------------------------------------------------- normalisation by the surface


def _fandisk_plus(tmp_path, extra_vertices: str, extra_faces: str, name: str) -> Path:
    """fandisk.off with vertices and faces appended (header counts updated)."""
    lines = [s for s in mesh_file("fandisk").read_text().splitlines() if s.strip()]
    nv, nf, ne = (int(x) for x in lines[1].split())
    new_v = [s for s in extra_vertices.splitlines() if s]
    new_f = [s for s in extra_faces.splitlines() if s]
    body = (["OFF", f"{nv + len(new_v)} {nf + len(new_f)} {ne}"] + lines[2 : 2 + nv] + new_v
            + lines[2 + nv : 2 + nv + nf] + new_f)
    return _write(tmp_path, name, "\n".join(body) + "\n")


def test_stray_degenerate_face_and_far_vertex_do_not_set_the_box(tmp_path):
    clean = load_mesh(mesh_file("fandisk"))
    n = load_mesh(mesh_file("fandisk"), normalize=False).num_vertices
    cases = {
        # A zero-area (collinear) triangle far away.
        "stray_face.off": ("1000 1000 1000\n1000.1 1000.3 1000.7\n1000.2 1000.6 1001.4\n",
                           f"3 {n} {n + 1} {n + 2}\n"),
        # An unreferenced vertex at 1e30.
        "far_vertex.off": ("1e30 1e30 1e30\n", ""),
        # A vertex at 1e30 in a face that repeats a corner (zero area).
        "far_spike.off": ("1e30 0 0\n", f"3 0 0 {n}\n"),
    }
    for name, (verts, faces) in cases.items():
        m = load_mesh(_fandisk_plus(tmp_path, verts, faces, name))
        np.testing.assert_allclose(m.vertices[: clean.num_vertices], clean.vertices, atol=1e-12,
                                   err_msg=name)
        np.testing.assert_allclose(surface_bounds(m), clean.bounds, atol=1e-12, err_msg=name)


def test_overflowing_coordinates_name_the_file(tmp_path):
    n = load_mesh(mesh_file("fandisk"), normalize=False).num_vertices
    path = _fandisk_plus(tmp_path, "1e200 0 0\n", f"3 0 1 {n}\n", "huge.off")
    with pytest.raises(MeshError, match="coordinates too large") as err:
        load_mesh(path)
    assert str(path) in str(err.value)


def test_collapsed_surface_is_an_error(tmp_path):
    # Only slivers: every face's area is rounding noise of its edge lengths.
    off = "OFF\n4 2 0\n0 0 0\n1 1e-15 0\n2 0 0\n5 5 5\n3 0 1 2\n3 3 3 0\n"
    path = _write(tmp_path, "slivers.off", off)
    with pytest.raises(MeshError, match="area is zero") as err:
        load_mesh(path)
    assert str(path) in str(err.value)
    with pytest.raises(MeshError, match="area is zero"):
        normalize_mesh(Mesh(np.array([[0.0, 0, 0], [1, 0, 0], [2, 0, 0]]), np.array([[0, 1, 2]])))


def test_usable_faces_keeps_every_face_of_the_example_meshes():
    for name in ["fandisk", "camel", "anchor_dense", "mannequin-devil"]:
        assert usable_faces(load_mesh(mesh_file(name))).all(), name


# ------------------------------------------------------------------- which files are meshes


def test_find_mesh_files_one_rule(tmp_path, caplog):
    for name in ["b.obj", "a.OFF", "c.ply", "._a.obj", ".hidden.stl", "notes.txt", "d.glb"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "x.obj").mkdir()
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.stl").symlink_to(tmp_path / "gone.stl")
    with caplog.at_level("WARNING"):
        found = find_mesh_files(tmp_path)
    assert [p.name for p in found] == ["a.OFF", "b.obj", "c.ply", "d.glb", "link.stl"]
    assert "x.obj" in caplog.text and "folder named like a mesh" in caplog.text
    with pytest.raises(NotADirectoryError):
        find_mesh_files(tmp_path / "b.obj")
    with pytest.raises(FileNotFoundError):
        find_mesh_files(tmp_path / "nope")


def test_train_lists_meshes_by_the_same_rule(tmp_path):
    from focusing.core.data.dataset import mesh_files

    for name in ["a.off", "._a.off", ".b.off"]:
        shutil.copy(mesh_file("couplingdown"), tmp_path / name)
    (tmp_path / "x.obj").mkdir()
    assert mesh_files(tmp_path) == find_mesh_files(tmp_path) == [tmp_path / "a.off"]


def test_check_output_path(tmp_path):
    (tmp_path / "file").write_text("x")
    assert check_output_path(tmp_path / "r.json") == tmp_path / "r.json"
    with pytest.raises(ValueError, match="is a file, not a folder"):
        check_output_path(tmp_path / "file" / "deeper" / "r.json")
    with pytest.raises(ValueError, match="does not exist"):
        check_output_path(tmp_path / "no" / "r.json")
    with pytest.raises(ValueError, match="is a folder"):
        check_output_path(tmp_path)
