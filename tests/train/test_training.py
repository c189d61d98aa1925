"""Every setup trains on real meshes for a few steps; plugins swap by --set; resume and
torchrun reproduce the single-process run."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from focusing.core import cli
from focusing.core.plugin_system import get_registry
from focusing.core.config import load_setup
from focusing.core.vae.train.trainer import Trainer

from _training_fixtures import TINY, _isolated_cache  # noqa: F401 (autouse fixture)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    files = sorted((run / "checkpoints").glob("step_*.safetensors"))
    return load_file(files[-1])


@pytest.mark.parametrize("setup", sorted(get_registry("setup").names()))
def test_every_setup_trains_two_steps_with_finite_loss(setup, tiny_data, tmp_path):
    cfg = load_setup(setup, TINY + ["train.steps=2"])
    trainer = Trainer(cfg, tiny_data, tmp_path / "run", progress=False)
    history = trainer.fit()
    trainer.close()
    assert len(history) == 2
    for res in history:
        assert math.isfinite(res.terms["total"]) and res.terms["total"] > 0
        assert res.counts["latent_kept"] <= res.counts["latent_all"]
        for key in ("depth", "normal", "mask", "ssim", "kl", "occupancy", "flex", "tv", "tsdf"):
            assert math.isfinite(res.terms[key]), key
    # the run folder holds the resolved config, TensorBoard events and safetensors weights
    run = tmp_path / "run"
    assert (run / "config.json").exists()
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert _weights(run)


def test_focusing_decodes_fewer_latents_than_triposf(tiny_data, tmp_path):
    kept = {}
    for setup in ("triposf", "focusing"):
        cfg = load_setup(setup, TINY + ["train.steps=1"])
        trainer = Trainer(cfg, tiny_data, tmp_path / setup, progress=False)
        res = trainer.fit()[0]
        trainer.close()
        kept[setup] = res.counts["latent_kept"]
        if setup == "triposf":
            assert res.counts["latent_kept"] == res.counts["latent_all"]
            assert res.counts["output_kept"] < res.counts["output_all"]
    assert kept["focusing"] < kept["triposf"]


@pytest.mark.parametrize("override", [
    'selectors.latent=["frustum"]',
    'selectors.latent=["depth-carving"]',
    'selectors.output=["frustum"]',
    "upsampler.name=subdivide",
    "backend.renderer=embree",
    "backend.sparse=spconv",
])
def test_swapping_one_plugin_by_set_trains(override, tiny_data, tmp_path):
    args = ["train", "--setup", "focusing", "--data", str(tiny_data),
            "--out", str(tmp_path / "run"), "--steps", "1", "--quiet"]
    for item in TINY + [override]:
        args += ["--set", item]
    result = CliRunner().invoke(cli.get_app(), args)
    assert result.exit_code == 0, result.output
    assert "trained focusing to step 1" in result.output


def test_resume_continues_exactly(tiny_data, tmp_path):
    # Each run is a fresh process, as a real --resume is (and so no library loaded by earlier
    # tests can change the arithmetic); train.deterministic makes it exact with default threads.
    runner = Path(__file__).with_name("_resume_runner.py")

    def run(name, stop, *extra):
        out = subprocess.run([sys.executable, str(runner), str(tiny_data), str(tmp_path / name),
                              "10", str(stop), *extra], capture_output=True, text=True,
                             cwd=runner.parent,
                             env={k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"})
        assert out.returncode == 0, out.stderr[-3000:]
        return out.stdout

    assert "step 10" in run("one", 10)
    assert "step 5" in run("two", 5)
    assert "step 10" in run("two", 10, "--resume")
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_existing_run_needs_resume(tiny_data, tmp_path):
    cfg = load_setup("focusing", TINY + ["train.steps=1"])
    Trainer(cfg, tiny_data, tmp_path / "run", progress=False).fit()
    with pytest.raises(FileExistsError, match="--resume"):
        Trainer(cfg, tiny_data, tmp_path / "run", progress=False)


def test_torchrun_two_processes_match_one_process(tiny_data, tmp_path):
    common = ["train", "--setup", "focusing", "--data", str(tiny_data), "--steps", "2", "--quiet"]
    for item in TINY + ["train.batch_size=2"]:
        common += ["--set", item]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    single = subprocess.run([sys.executable, "-m", "focusing.core.cli", *common, "--out",
                             str(tmp_path / "single")], env=env, capture_output=True, text=True)
    assert single.returncode == 0, single.stderr[-3000:]
    multi = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                            "--nproc_per_node=2", "-m", "focusing.core.cli", *common, "--out",
                            str(tmp_path / "multi")], env=env, capture_output=True, text=True)
    assert multi.returncode == 0, multi.stderr[-3000:]
    a, b = _weights(tmp_path / "single"), _weights(tmp_path / "multi")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6, msg=k)
