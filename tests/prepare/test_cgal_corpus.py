"""scripts/cgal_corpus.py on a small stand-in for Debian's libcgal-demo package, built here
(nothing is downloaded): meshes copied flat with unique stems, point sets left out, CREDITS.md
from the package's copyright file, and transformed copies that are exact rotations and scales."""

from __future__ import annotations

import io
import json
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from meshdata import REPO

sys.path.insert(0, str(REPO / "scripts"))
import cgal_corpus  # noqa: E402

TETRA = b"OFF\n4 4 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 2 1\n3 0 1 3\n3 0 3 2\n3 1 2 3\n"
TETRA_PLY = (b"ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\n"
             b"property float z\nelement face 4\nproperty list uchar int vertex_indices\n"
             b"end_header\n0 0 0\n2 0 0\n0 2 0\n0 0 2\n3 0 2 1\n3 0 1 3\n3 0 3 2\n3 1 2 3\n")
POINTS_PLY = (b"ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\n"
              b"property float z\nelement face 0\nproperty list uchar int vertex_indices\n"
              b"end_header\n0 0 0\n1 1 1\n")
POINTS_OFF = b"OFF\n2 0 0\n0 0 0\n1 1 1\n"


def _tar(files: dict[str, bytes], mode: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _deb(path: Path, tree: dict[str, bytes]) -> Path:
    """A .deb: an ar archive of debian-binary, control.tar.xz and data.tar.xz."""
    members = {"debian-binary": b"2.0\n", "control.tar.xz": _tar({}, "w:xz"),
               "data.tar.xz": _tar(tree, "w:xz")}
    out = bytearray(b"!<arch>\n")
    for name, data in members.items():
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode()
        out += data + (b"\n" if len(data) % 2 else b"")
    path.write_bytes(bytes(out))
    return path


@pytest.fixture
def debs(tmp_path) -> list[Path]:
    data = _tar({"data/meshes/tetra.off": TETRA, "data/meshes/tetra.ply": TETRA_PLY,
                 "data/meshes/points.ply": POINTS_PLY, "data/points_3/tetra.off": TETRA,
                 "data/points_3/cloud.off": POINTS_OFF, "data/images/x.inr": b"no mesh"}, "w:gz")
    demo = _deb(tmp_path / "libcgal-demo_9.9-1_all.deb",
                {"./usr/share/doc/libcgal-dev/data.tar.gz": data})
    dev = _deb(tmp_path / "libcgal-dev_9.9-1_amd64.deb",
               {"./usr/share/doc/libcgal-dev/copyright": b"Copyright test: CC0 1.0 data.\n"})
    return [demo, dev]


def test_the_corpus_is_flat_credited_and_its_copies_exact(debs, tmp_path, capsys):
    out = tmp_path / "corpus"
    assert cgal_corpus.main([str(out), "--deb", str(debs[0]), "--transform", "2"]) == 0
    assert "3 meshes from libcgal-demo 9.9-1 and 6 transformed copies; 2 point sets" in \
        capsys.readouterr().out
    originals = {"tetra.off", "tetra-ply.ply", "points_3-tetra.off"}
    copies = {f"{Path(n).stem}-t{k:02d}.off" for n in originals for k in (1, 2)}
    assert {p.name for p in out.iterdir()} == originals | copies | {"CREDITS.md",
                                                                    "transforms.jsonl"}
    assert (out / "tetra.off").read_bytes() == TETRA  # copied as shipped
    assert (out / "tetra-ply.ply").read_bytes() == TETRA_PLY
    text = (out / "CREDITS.md").read_text()
    assert "Copyright test: CC0 1.0 data." in text  # found in the libcgal-dev .deb beside it
    assert "| tetra-ply.ply | data/meshes/tetra.ply |" in text
    assert "data/meshes/points.ply, data/points_3/cloud.off" in text  # point sets named
    draws = [json.loads(line) for line in (out / "transforms.jsonl").read_text().splitlines()]
    assert {d["file"] for d in draws} == copies
    original = cgal_corpus.load_triangles(out / "tetra.off")
    for draw in (d for d in draws if d["from"] == "tetra.off"):
        vertices, faces = cgal_corpus.load_triangles(out / draw["file"])
        rotation = np.array(draw["rotation"])
        assert np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-5)
        assert np.linalg.det(rotation) == pytest.approx(1.0, abs=1e-5)
        assert np.array_equal(faces, original[1])
        assert np.allclose(vertices, draw["scale"] * original[0] @ rotation.T, atol=1e-5)
    assert 0.5 <= min(d["scale"] for d in draws) and max(d["scale"] for d in draws) <= 2.0
    # the same seed gives the same copies; a rerun rewrites its own corpus
    before = (out / "tetra-t01.off").read_bytes()
    assert cgal_corpus.main([str(out), "--deb", str(debs[0]), "--transform", "1"]) == 0
    assert (out / "tetra-t01.off").read_bytes() == before and not (out / "tetra-t02.off").exists()


def test_a_foreign_folder_is_refused(debs, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(SystemExit):
        cgal_corpus.main([str(tmp_path / "mine"), "--deb", str(debs[0])])
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
