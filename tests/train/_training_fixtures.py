"""Tiny settings so that every setup trains for a few steps on the CPU in seconds."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshdata import mesh_folder

TINY = [
    "model.latent_resolution=8",
    "model.points_per_shape=4096",
    "cameras.image_size=40",
    "encoder.width=16", "encoder.depth=2", "encoder.heads=2", "encoder.window=4",
    "decoder.width=16", "decoder.depth=2", "decoder.heads=2", "decoder.window=4",
    "pointnet.hidden=16", "pointnet.out=16",
    "upsampler.channels=[8, 8]",
    "loss.tsdf_views=4",
    "loss.warmup_render=true",  # the setups' own (rendered) step from step 0; tiny_run does not
    "train.checkpoint_every=0",
    "evaluation.image_every=1",
    "selectors.params.zoom.n_min=8",
    "selectors.params.zoom.n_max=32",
]


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    """A data folder of two small real meshes: one closed CAD part, one open mesh."""
    data = mesh_folder(tmp_path / "data", "couplingdown", "elephant-with-holes")
    return data


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("FOCUSING_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def tiny_run(tiny_data: Path, tmp_path: Path) -> Path:
    """A run folder trained for one step with the tiny settings."""
    from focusing.core.config import load_setup
    from focusing.core.vae.train.trainer import Trainer

    run = tmp_path / "tiny-run"
    trainer = Trainer(load_setup("focusing", TINY + ["train.steps=1"]), tiny_data, run,
                      progress=False)
    trainer.fit()
    trainer.close()
    return run


@pytest.fixture
def surface_run(tiny_data: Path, tmp_path: Path) -> Path:
    """A tiny run trained long enough (120 render-free steps) to decode a surface: the decoder
    starts as an empty field (with pointnet.reach = 1, 80 steps left couplingdown empty)."""
    from focusing.core.config import load_setup
    from focusing.core.vae.train.trainer import Trainer

    run = tmp_path / "surface-run"
    trainer = Trainer(load_setup("focusing", TINY + ["train.steps=120", "loss.tsdf_steps=120",
                                                     "train.lr=5e-3", "loss.warmup_render=false"]),
                      tiny_data, run, progress=False)
    trainer.fit()
    trainer.close()
    return run
