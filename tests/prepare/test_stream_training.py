"""Training on a streamed prepared set: the records of each step come through a read-ahead
DataLoader (core.data.streaming.StepRecords, 2 worker processes) and give the very losses of the
same run in memory; a run resumed at step S reads from S on what an unbroken run reads.

Render-free warm-up steps on three small prepared meshes (batch 2: steps cross epochs) keep a
run to seconds."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from focusing.core.config import load_setup
from focusing.core.data import streaming
from focusing.core.data.prepare import prepare_dataset
from focusing.core.vae.train.trainer import Trainer

from meshdata import mesh_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from _training_fixtures import TINY  # noqa: E402

SETTINGS = TINY + ["model.points_per_shape=2048", "cameras.image_size=32",
                   "loss.warmup_render=false", "loss.tsdf_steps=100", "train.batch_size=2",
                   "train.deterministic=true", "evaluation.calibration_meshes=1"]
MESHES = ("blade", "couplingdown", "elephant-with-holes")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    meshes = tmp_path_factory.mktemp("meshes")
    for name in MESHES:
        shutil.copy(mesh_file(name), meshes)
    out = tmp_path_factory.mktemp("sets") / "prepared"
    assert prepare_dataset(meshes, out, load_setup("focusing", SETTINGS),
                           progress=False).exit_code == 0
    return out


@pytest.fixture
def reads(monkeypatch) -> list:
    """Every (step, slot, shape name) the trainer is handed, and the StepRecords objects."""
    seen, made = [], []
    call, init = streaming.StepRecords.__call__, streaming.StepRecords.__init__

    def spy_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        made.append(self)

    def spy_call(self, step, slot):
        record = call(self, step, slot)
        seen.append((step, slot, record.name))
        return record

    monkeypatch.setattr(streaming.StepRecords, "__init__", spy_init)
    monkeypatch.setattr(streaming.StepRecords, "__call__", spy_call)
    return seen, made


def _fit(prepared: Path, run: Path, steps: int, resume: bool = False, stop: int | None = None):
    trainer = Trainer(load_setup("focusing", SETTINGS + [f"train.steps={steps}"]), prepared, run,
                      resume=resume, progress=False)
    try:
        return trainer.data.streamed, trainer.fit(stop)
    finally:
        trainer.vae_step.records.close()
        trainer.close()


def test_a_streamed_run_trains_as_the_run_in_memory(prepared, tmp_path, monkeypatch, reads):
    seen, made = reads
    streamed, memory_run = _fit(prepared, tmp_path / "memory", 3)
    assert not streamed and made[-1].restarts == []  # in memory: indexed, no loader
    in_memory = list(seen)
    seen.clear()
    monkeypatch.setenv("FOCUSING_STREAM_BYTES", "0")
    streamed, stream_run = _fit(prepared, tmp_path / "stream", 3)
    assert streamed and made[-1].restarts == [0] and made[-1].workers == 2
    assert seen == in_memory and len(seen) == 6
    assert [r.terms for r in stream_run] == [r.terms for r in memory_run]
    assert [r.counts for r in stream_run] == [r.counts for r in memory_run]


def test_a_resumed_streamed_run_reads_what_an_unbroken_one_reads(prepared, tmp_path,
                                                                   monkeypatch, reads):
    seen, made = reads
    monkeypatch.setenv("FOCUSING_STREAM_BYTES", "0")
    _fit(prepared, tmp_path / "one", 4)
    unbroken = list(seen)
    assert made[-1].restarts == [0]
    seen.clear()
    _fit(prepared, tmp_path / "two", 4, stop=2)
    assert made[-1].restarts == [0]
    _fit(prepared, tmp_path / "two", 4, resume=True)
    assert made[-1].restarts == [2]  # the resumed run's loader starts at its step
    assert seen == unbroken and [s for s, _, _ in seen] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert len({name for _, _, name in seen}) == len(MESHES)


def test_step_records_read_this_ranks_shard_and_restart_out_of_order(prepared, monkeypatch):
    from focusing.core.data.dataset import ShapeDataset, shape_order

    data = ShapeDataset(prepared, load_setup("focusing", SETTINGS), stream=True)
    records = streaming.StepRecords(data, 4, 7, rank=1, world_size=2, workers=0)
    names = [s.name for s in data.records.shapes]
    for step in (5, 6, 7):
        for slot in (2, 3):  # rank 1 of 2 computes slots 2 and 3 of a batch of 4
            assert records(step, slot).name == names[shape_order(len(names), step, 4, 7)[slot]]
    assert records.restarts == [5]
    assert records(3, 3).name == names[shape_order(len(names), 3, 4, 7)[3]]  # back in time
    assert records(4, 2).name == names[shape_order(len(names), 4, 4, 7)[2]]  # goes on from it
    assert records.restarts == [5, 3]
    assert records(4, 0).name == names[shape_order(len(names), 4, 4, 7)[0]]  # not its slot
    assert records.restarts == [5, 3]
    cache = records.cache(size=2)
    for key in "abc":
        cache[key] = key
    assert list(cache) == ["b", "c"] and records.cache() == {}
    records.close()
