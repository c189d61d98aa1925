"""`focusing train` on faults a user meets overnight: diverging settings never end in exit 0
with NaN checkpoints; resume refuses another run's setup; a damaged cache entry is rebuilt;
deterministic mode makes repeated runs bitwise equal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from focusing.core import cli
from focusing.core.config import resolve_setup
from focusing.core.data.dataset import ShapeDataset

from _training_fixtures import TINY, _isolated_cache  # noqa: F401 (autouse fixture)


def _train(data: Path, out: Path, *sets: str, extra=()):
    args = ["train", "--setup", "focusing", "--data", str(data), "--out", str(out), "--quiet",
            *extra]
    for item in TINY + list(sets):
        args += ["--set", item]
    return CliRunner().invoke(cli.get_app(), args)


# A huge loss weight: the occupancy term, which has a gradient from step 0 (the render terms
# have none until the decoder, an empty field at step 0, makes a surface).
@pytest.mark.parametrize("override", ["train.lr=1e6", "loss.occupancy=1e38", "train.grad_clip=0"])
def test_diverging_settings_never_leave_nan_checkpoints(override, tiny_data, tmp_path):
    out = tmp_path / "run"
    result = _train(tiny_data, out, override, "train.checkpoint_every=2",
                    "train.max_nonfinite_skips=3", extra=["--steps", "8"])
    assert "Traceback" not in result.output
    if result.exit_code == 0:  # trained through (finite) or skipped a few steps, saying so
        assert "trained focusing to step 8" in result.output
    else:
        assert result.exit_code == 1, result.output
        assert "error: 3 steps in a row had a non-finite loss or gradient" in result.output
    for f in (out / "checkpoints").glob("*.safetensors"):
        for k, v in load_file(f).items():
            assert torch.isfinite(v).all(), (f.name, k)
    if override != "train.grad_clip=0":
        assert result.exit_code == 1, result.output  # these two diverge


def test_resume_refuses_another_setup_unless_allowed(tiny_data, tiny_run):
    r = _train(tiny_data, tiny_run, "train.steps=2", "encoder.width=32", extra=["--resume"])
    assert (r.exit_code == 2 and "model's shape differs" in r.output
            and "encoder.width: 16 -> 32" in r.output)
    r = _train(tiny_data, tiny_run, "train.steps=2", "train.lr=0.01", extra=["--resume"])
    assert (r.exit_code == 2 and "--allow-changes" in r.output
            and "train.lr: 0.001 -> 0.01" in r.output)
    assert json.loads((tiny_run / "config.json").read_text())["train"]["lr"] == 0.001  # untouched
    r = _train(tiny_data, tiny_run, "train.steps=2", "train.lr=0.01",
               extra=["--resume", "--allow-changes"])
    assert r.exit_code == 0, r.output
    assert "trained focusing to step 2" in r.output
    changes = json.loads((tiny_run / "config_changes.json").read_text())
    assert changes == [{"step": 1, "changes": {"train.lr": {"old": 0.001, "new": 0.01},
                                               "train.steps": {"old": 1, "new": 2}}}]


def test_damaged_run_folder_gives_a_named_error_not_a_traceback(tiny_data, tiny_run, tmp_path):
    (tiny_run / "checkpoints" / "step_00000001.safetensors").write_bytes(b"\x00" * 12)
    r = _train(tiny_data, tiny_run, "train.steps=1", extra=["--resume"])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "step_00000001.safetensors: damaged safetensors file" in r.output
    rec = CliRunner().invoke(cli.get_app(), ["reconstruct", str(tiny_run),
                                             str(next(tiny_data.iterdir())),
                                             "-o", str(tmp_path / "x.ply")])
    assert rec.exit_code == 2 and "step_00000001.safetensors" in rec.output
    (tiny_run / "config.json").write_text("{")
    rec = CliRunner().invoke(cli.get_app(), ["reconstruct", str(tiny_run),
                                             str(next(tiny_data.iterdir())),
                                             "-o", str(tmp_path / "x.ply")])
    assert rec.exit_code == 2 and "config.json: corrupt" in rec.output


def test_corrupt_cache_entry_is_rebuilt(tiny_data, tmp_path, capsys):
    setup = resolve_setup("focusing", TINY)
    first = ShapeDataset(tiny_data, setup, cache_dir=tmp_path / "c", progress=False)
    entry = sorted((tmp_path / "c").glob("*.pt"))[0]
    entry.write_bytes(entry.read_bytes()[:200])
    again = ShapeDataset(tiny_data, setup, cache_dir=tmp_path / "c", progress=False)
    assert f"{entry}: damaged cache entry" in capsys.readouterr().err
    for a, b in zip(first.records, again.records):
        assert torch.equal(a.points, b.points) and torch.equal(a.active[8], b.active[8])
    ShapeDataset(tiny_data, setup, cache_dir=tmp_path / "c", progress=False)  # now intact: silent
    assert "damaged" not in capsys.readouterr().err


def test_deterministic_mode_repeats_bitwise_with_default_threads(tiny_data, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    weights = []
    for name in ("a", "b"):
        args = [sys.executable, "-m", "focusing.core.cli", "train", "--setup", "focusing", "--data",
                str(tiny_data), "--out", str(tmp_path / name), "--steps", "6", "--quiet"]
        for item in TINY + ["train.deterministic=true"]:
            args += ["--set", item]
        out = subprocess.run(args, capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stderr[-3000:]
        weights.append(load_file(tmp_path / name / "checkpoints" / "step_00000006.safetensors"))
    for k in weights[0]:
        assert torch.equal(weights[0][k], weights[1][k]), k
