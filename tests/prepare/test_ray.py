"""`focusing prepare --ray` on a local Ray instance started by the test: the same manifest and
the same record files as local worker processes (apart from the timings), a bad mesh recorded
and not fatal, a rerun that skips what is done; and without Ray, an error naming the extra.

One Ray instance of 2 CPUs (no dashboard) serves the module: about 4 s to start."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load

from focusing.core import cli
from focusing.core.config import load_setup
from focusing.core.data.prepare import prepare_dataset
from focusing.core.data.prepared import MANIFEST_FILE, read_manifest, read_metadata

from meshdata import REPO, mesh_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from _training_fixtures import TINY  # noqa: E402

SETTINGS = TINY + ["model.points_per_shape=2048", "cameras.image_size=32"]
MESHES = ("couplingdown", "elephant-with-holes")
BAD = REPO / "tests" / "data" / "bad_meshes" / "garbage.off"
TIMING = ("seconds", "finished")  # what may differ between two runs of the same input


@pytest.fixture(scope="module")
def meshes(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("meshes")
    for name in MESHES:
        shutil.copy(mesh_file(name), folder)
    shutil.copy(BAD, folder)
    return folder


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="ray is not installed (the extra focusing-core[ray])")
    src = os.pathsep.join(str(p) for p in sorted((REPO / "packages").glob("*/src")))
    path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path, "OMP_NUM_THREADS": "1"}})
    yield ray
    ray.shutdown()


def _content(path: Path) -> tuple[dict, dict]:
    """A record file's metadata and tensors. (Its bytes may differ between two processes: the
    safetensors header lists the metadata in a per-process hash order.)"""
    data = path.read_bytes()
    return read_metadata(path), load(data)


def _state(folder: Path) -> dict:
    """The manifest's state, keyed by the mesh's file name, without the timings."""
    return {Path(s).name: {k: v for k, v in e.items() if k not in TIMING}
            for s, e in read_manifest(folder).items()}


def test_ray_prepares_what_local_workers_prepare(local_ray, meshes, tmp_path, capsys):
    setup = load_setup("focusing", SETTINGS)
    local = prepare_dataset(meshes, tmp_path / "local", setup, workers=0, progress=False)
    seen = []
    through_ray = prepare_dataset(meshes, tmp_path / "ray", setup, ray="auto", progress=False,
                                  on_result=seen.append)
    assert local.exit_code == through_ray.exit_code == 1  # the bad mesh
    for res in (local, through_ray):
        assert (res.built, res.failed, res.skipped) == (2, 1, 0)
    assert through_ray.reasons == local.reasons
    assert len(seen) == 3
    a, b = _state(tmp_path / "local"), _state(tmp_path / "ray")
    assert a == b and a["garbage.off"]["status"] == "failed" and a["garbage.off"]["reason"]
    for name, entry in a.items():  # the same record files: metadata, tensors, sizes
        if entry["status"] == "ok":
            x, y = (_content(tmp_path / run / entry["record"]) for run in ("local", "ray"))
            assert x[0] == y[0] and x[1].keys() == y[1].keys(), name
            assert all(x[1][k].dtype == y[1][k].dtype and torch.equal(x[1][k], y[1][k])
                       for k in x[1]), name
    assert all(e["seconds"].keys() >= {"load", "tsdf"}
               for e in read_manifest(tmp_path / "ray").values() if e["status"] == "ok")
    assert (tmp_path / "local" / "dataset.json").read_text() == \
        (tmp_path / "ray" / "dataset.json").read_text()
    assert not [p for p in (tmp_path / "ray").rglob("*") if p.name.endswith(".tmp")]

    # a rerun through Ray skips what is done and writes nothing; a lost record is built again
    lines = (tmp_path / "ray" / MANIFEST_FILE).read_text()
    ok = next(e for e in b.values() if e["status"] == "ok")
    (tmp_path / "ray" / ok["record"]).unlink()
    sets = [a for item in SETTINGS for a in ("--set", item)]
    with pytest.raises(SystemExit) as stop:  # through the command this time
        cli.main(["prepare", str(meshes), "--out", str(tmp_path / "ray"), "--ray", "auto",
                  "--quiet", *sets])
    assert stop.value.code == 1
    assert "1 built, 1 skipped (done before), 0 failed, 1 failed before" in \
        capsys.readouterr().out
    after = (tmp_path / "ray" / MANIFEST_FILE).read_text()
    assert after.startswith(lines) and len(after.splitlines()) == len(lines.splitlines()) + 1
    assert _state(tmp_path / "ray") == a


def test_without_ray_the_error_names_the_extra(meshes, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as when not installed
    with pytest.raises(SystemExit) as stop:
        cli.main(["prepare", str(meshes), "--out", str(tmp_path / "set"), "--ray", "auto",
                  "--quiet"])
    assert stop.value.code == 2
    assert "focusing-core[ray]" in capsys.readouterr().err
    assert not (tmp_path / "set").exists()  # refused before anything is written
