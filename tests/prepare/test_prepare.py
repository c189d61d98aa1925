"""`focusing prepare` and the prepared data set: resume and skip, a failing mesh recorded and not
fatal, the manifest after a kill, records equal to build_record's, `train --data` on a prepared
set, and the streaming order against shape_order with disjoint, complete per-rank shards.

Small settings (latent 8, 2048 points, 4 TSDF views of 32 pixels) on three real meshes keep
each preparation to seconds."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from focusing.core import cli
from focusing.core.config import ConfigError, load_setup
from focusing.core.data.prepare import prepare_dataset
from focusing.core.data.prepared import MANIFEST_FILE, read_manifest, read_record
from focusing.core.data.streaming import PreparedShapes, ShardSampler, shard_indices, shard_loader
from focusing.core.engine.distributed import rank_slots
from focusing.core.data.dataset import ShapeDataset, shape_order
from focusing.core.data.records import build_record, cache_settings

from meshdata import REPO, mesh_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from _training_fixtures import TINY  # noqa: E402

SETTINGS = TINY + ["model.points_per_shape=2048", "cameras.image_size=32"]
MESHES = ("blade", "couplingdown", "fandisk")
BAD = REPO / "tests" / "data" / "bad_meshes"
SETS = [a for s in SETTINGS for a in ("--set", s)]


def _setup(*extra: str):
    return load_setup("focusing", SETTINGS + list(extra))


def _run(*args) -> int:
    """`focusing ARGS` in this process; its exit code."""
    with pytest.raises(SystemExit) as stop:
        cli.main([str(a) for a in args])
    return stop.value.code


def _records_equal(a, b) -> None:
    for key in ("vertices", "faces", "points", "normals", "tsdf_depths", "tsdf_corners",
                "tsdf_values"):
        x, y = getattr(a, key), getattr(b, key)
        assert x.dtype == y.dtype and torch.equal(x, y), key
    assert a.active.keys() == b.active.keys()
    assert all(torch.equal(a.active[r], b.active[r]) for r in a.active)
    assert a.tsdf_cameras == b.tsdf_cameras and a.scale == b.scale and a.name == b.name
    assert np.array_equal(a.center, b.center) and a.center.dtype == b.center.dtype


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def meshes(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("meshes")
    for name in MESHES:
        shutil.copy(mesh_file(name), folder)
    return folder


@pytest.fixture(scope="module")
def prepared(meshes, tmp_path_factory) -> Path:
    """The three meshes prepared through the command (exit code 0: all ok)."""
    out = tmp_path_factory.mktemp("sets") / "prepared"
    assert _run("prepare", meshes, "--out", out, "--workers", 0, "--quiet", *SETS) == 0
    return out


@pytest.fixture
def copy(prepared, tmp_path) -> Path:
    """A copy of the prepared set that a test may change (file times kept)."""
    return Path(shutil.copytree(prepared, tmp_path / "copy"))


def test_a_record_read_back_equals_build_record(prepared):
    settings = cache_settings(_setup())
    state = read_manifest(prepared)
    assert len(state) == len(MESHES) and {e["status"] for e in state.values()} == {"ok"}
    for source, entry in state.items():
        assert entry["seconds"].keys() == {"load", "sample", "voxelize", "render", "tsdf"}
        assert entry["bytes"] == (prepared / entry["record"]).stat().st_size
        _records_equal(read_record(prepared / entry["record"]), build_record(source, settings))
    info = json.loads((prepared / "dataset.json").read_text())
    assert info["settings"] == settings and info["counts"] == {"shapes": 3, "ok": 3, "failed": 0}


def test_resume_skips_finished_shapes_and_redoes_missing_ones(copy, meshes):
    before = _mtimes(copy)
    result = prepare_dataset(meshes, copy, _setup(), progress=False)
    assert (result.built, result.skipped, result.failed, result.exit_code) == (0, 3, 0, 0)
    assert _mtimes(copy) == before  # nothing touched: records, manifest, dataset.json
    # a record whose manifest line is missing (killed between the two) is built again
    lines = (copy / MANIFEST_FILE).read_text().splitlines(keepends=True)
    (copy / MANIFEST_FILE).write_text("".join(lines[:-1]))
    gone = json.loads(lines[-1])
    # a deleted record is built again too
    first = json.loads(lines[0])
    (copy / first["record"]).unlink()
    result = prepare_dataset(meshes, copy, _setup(), progress=False)
    assert (result.built, result.skipped) == (2, 1)
    state = read_manifest(copy)
    assert {state[s]["status"] for s in state} == {"ok"}
    for entry in (gone, first):
        assert (copy / entry["record"]).stat().st_mtime_ns != before[Path(entry["record"]).name]
    # a set prepared with other settings is refused, naming the keys
    with pytest.raises(ConfigError, match=r"points \(model.points_per_shape\)"):
        prepare_dataset(meshes, copy, _setup("model.points_per_shape=1024"), progress=False)


def test_a_failing_mesh_is_recorded_with_its_reason_and_not_fatal(tmp_path, capsys):
    data, out = tmp_path / "data", tmp_path / "set"
    data.mkdir()
    shutil.copy(mesh_file("couplingdown"), data)
    for name in ("nan_vertex.off", "inf_vertex.off", "empty.obj", "garbage.off"):
        shutil.copy(BAD / name, data)
    # worker processes: a failure in a worker comes back as a result
    assert _run("prepare", data, "--out", out, "--workers", 2, "--quiet", *SETS) == 1
    text = capsys.readouterr().out
    assert "1 built" in text and "4 failed" in text and "failures by reason:" in text
    assert "2  MeshError: N vertices have NaN or infinite coordinates" in text
    assert "stage" in text and "tsdf" in text  # the per-stage time table
    state = {Path(s).name: e for s, e in read_manifest(out).items()}
    assert state["couplingdown.off"]["status"] == "ok"
    assert (out / state["couplingdown.off"]["record"]).is_file()
    assert state["empty.obj"]["reason"] == "MeshError: file is empty"
    assert "empty.obj" in state["empty.obj"]["error"]
    assert all(state[n]["status"] == "failed" and not (out / state[n]["record"]).exists()
               for n in ("nan_vertex.off", "inf_vertex.off", "empty.obj", "garbage.off"))
    lines = len((out / MANIFEST_FILE).read_text().splitlines())
    # failed shapes are not retried unless asked; the exit code still says some failed
    assert _run("prepare", data, "--out", out, "--workers", 0, "--quiet", *SETS) == 1
    assert "4 failed before and not retried" in capsys.readouterr().out
    assert len((out / MANIFEST_FILE).read_text().splitlines()) == lines
    assert _run("prepare", data, "--out", out, "--workers", 0, "--quiet", "--retry-failed",
                *SETS) == 1
    assert len((out / MANIFEST_FILE).read_text().splitlines()) == lines + 4
    assert len(PreparedShapes(out)) == 1  # training sees the ok shape only


def test_the_manifest_after_a_simulated_kill(meshes, tmp_path):
    out = tmp_path / "set"
    src = os.pathsep.join(str(p) for p in sorted((REPO / "packages").glob("*/src")))
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "focusing.core.cli", "prepare", str(meshes),
                             "--out", str(out), "--workers", "0", "--quiet", *SETS], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not ((out / MANIFEST_FILE).is_file() and (out / MANIFEST_FILE).stat().st_size):
            assert proc.poll() is None and time.monotonic() < deadline, "no record landed"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    # whatever the kill interrupted, a file named like a record is a whole record
    for path in (out / "records").glob("*.safetensors"):
        read_record(path)
    result = prepare_dataset(meshes, out, _setup(), progress=False)
    assert result.exit_code == 0 and result.built + result.skipped == 3
    assert result.skipped >= 1  # the shape whose line landed before the kill
    lines = [json.loads(x) for x in (out / MANIFEST_FILE).read_text().splitlines()]
    assert Counter(e["source"] for e in lines if e["status"] == "ok") == Counter(
        str(p) for p in sorted(meshes.iterdir()))  # every shape exactly once ok
    assert not list(out.rglob("*.tmp"))
    records = sorted((out / "records").glob("*.safetensors"))
    assert len(records) == 3 and all(read_record(p) for p in records)


def test_train_reads_a_prepared_set_as_it_reads_the_mesh_folder(prepared, meshes, tmp_path,
                                                                monkeypatch):
    setup = _setup()
    from_meshes = ShapeDataset(meshes, setup, cache_dir=tmp_path / "cache", progress=False)
    from_set = ShapeDataset(prepared, setup, progress=False)
    streamed = ShapeDataset(prepared, setup, stream=True)
    assert not from_set.streamed and streamed.streamed
    assert [r.name for r in from_set.records] == [r.name for r in from_meshes.records]
    assert [Path(f).name for f in from_set.files] == [f.name for f in from_meshes.files]
    for a, b, c in zip(from_meshes.records, from_set.records, streamed.records[:3]):
        _records_equal(a, b)
        _records_equal(a, c)
    with pytest.raises(ConfigError, match=r"resolutions \(model.latent_resolution\): prepared"):
        ShapeDataset(prepared, _setup("model.latent_resolution=16"), progress=False)
    # one training step through the command, reading the records one at a time
    from focusing.core.vae.train.trainer import Trainer

    monkeypatch.setenv("FOCUSING_STREAM_BYTES", "0")
    trainer = Trainer(_setup("train.steps=1"), prepared, tmp_path / "run", progress=False)
    try:
        assert trainer.data.streamed and len(trainer.data) == 3
        history = trainer.fit()
    finally:
        trainer.close()
    assert len(history) == 1 and np.isfinite(history[-1].terms["total"])


def test_shards_of_a_list_file_read_as_one_set(prepared, meshes, tmp_path):
    """The cluster route: each task prepares its shard of a list into its own folder; a folder
    of such sets reads as one, in the same order, with the same records."""
    listing = tmp_path / "meshes.txt"
    listing.write_text("# three meshes\n" + "".join(f"{p}\n" for p in sorted(meshes.iterdir())))
    for rank in range(2):
        assert _run("prepare", listing, "--out", tmp_path / "parts" / f"part-{rank}",
                    "--shard", f"{rank}/2", "--workers", 0, "--quiet", *SETS) == 0
    assert len(read_manifest(tmp_path / "parts" / "part-0")) == 2
    whole, parts = PreparedShapes(prepared), PreparedShapes(tmp_path / "parts")
    assert [s.name for s in parts.shapes] == [s.name for s in whole.shapes]
    for a, b in zip(whole, parts):
        _records_equal(a, b)


@pytest.mark.parametrize("n,batch,world", [(3, 2, 2), (7, 4, 2), (50, 8, 4), (5, 6, 3)])
def test_streaming_order_is_shape_order_and_rank_shards_are_disjoint_and_complete(n, batch,
                                                                                   world):
    seed, steps = 11, range(3, 3 + 2 * n)
    shards = [shard_indices(n, batch, seed, steps, r, world) for r in range(world)]
    per = batch // world
    assert len(ShardSampler(n, batch, seed, steps.start, steps.stop)) == len(steps) * batch
    slots = [rank_slots(batch, r, world) for r in range(world)]
    assert sorted(sum(slots, [])) == list(range(batch))  # disjoint and complete slots
    for k, step in enumerate(steps):
        order = shape_order(n, step, batch, seed)
        # the ranks' shares of the step, in rank order, are the step's global batch
        assert sum((s[k * per:(k + 1) * per] for s in shards), []) == order
    # every shape read equally often over whole epochs (all ranks together)
    epochs = range(0, n)  # n steps of `batch` slots: `batch` whole epochs
    counts = Counter(sum((shard_indices(n, batch, seed, epochs, r, world)
                          for r in range(world)), []))
    assert set(counts) == set(range(n)) and set(counts.values()) == {batch}
    # a resume at step S reads what the unbroken run reads from S on
    for r in range(world):
        assert shard_indices(n, batch, seed, range(5, steps.stop), r, world) == \
            shards[r][(5 - steps.start) * per:]


def test_a_shard_loader_reads_this_ranks_records_in_order(prepared):
    shapes = PreparedShapes(prepared)
    sampler = ShardSampler(len(shapes), 2, 0, 4, 10, rank=1, world_size=2)
    names = [r.name for r in shard_loader(shapes, sampler, workers=1)]
    assert names == [shapes.shapes[i].name for i in sampler]
