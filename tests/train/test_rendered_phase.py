"""The rendered phase learns: after a render-free warm-up, rendered steps lower the render loss.

Issue 22 asks whether the rendered steps (where selectors, zoom, renderers and cameras act)
add anything over the TSDF warm-up. This is the suite's guard that they at least optimise what
they claim to: on a tiny case, the depth + normal + mask loss measured on fixed probe views
falls after the rendered steps. The TSDF term is off after the warm-up (loss.tsdf_after = 0),
so nothing but the render terms (and the small KL, occupancy, TV and consistency terms) can
move it; with the render terms' gradient cut (`_detached`, a broken render loss that still
reports its value), the same check fails. That second test is the proof that the first can.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from focusing.core.config import load_setup
from focusing.core.geometry.mesh import Mesh
from focusing.core.geometry.meshio import save_mesh
from focusing.core.vae.train import losses
from focusing.core.vae.train.trainer import Trainer

from _training_fixtures import _isolated_cache  # noqa: F401 (fixture)

WARMUP = 150
RENDERED = 60
TINY = [
    "model.latent_resolution=8", "model.points_per_shape=4096",
    "encoder.width=16", "encoder.depth=1", "encoder.heads=2", "encoder.window=4",
    "decoder.width=32", "decoder.depth=1", "decoder.heads=2", "decoder.window=4",
    "pointnet.hidden=16", "pointnet.out=16", "upsampler.channels=[16, 8]",
    "cameras.image_size=48", "loss.tsdf_views=6", f"loss.tsdf_steps={WARMUP}",
    "loss.warmup_latents=0", "loss.tsdf_after=0.0",
    f"train.steps={WARMUP + RENDERED}", "train.lr=5e-3", f"train.restart_at={WARMUP}",
    "train.checkpoint_every=0", "evaluation.image_every=0", "train.eval_every=0", "train.seed=0",
]
RENDER_TERMS = ("depth", "normal", "mask")
# the probe views: steps far beyond the run, so no training step saw these cameras
PROBE_STEPS = range(100_000, 100_008)
# the rendered steps must remove at least this share of the warm-up's render loss
DROP = 0.15


def _sphere_with_a_fin(path):
    # a closed body plus a thin open sheet: what the TSDF target handles worst
    body = trimesh.creation.icosphere(subdivisions=3, radius=0.28)
    fin = trimesh.creation.box(extents=(0.5, 0.02, 0.35))
    fin.apply_translation((0.2, 0.0, 0.0))
    tm = trimesh.util.concatenate([body, fin])
    save_mesh(Mesh(np.asarray(tm.vertices, dtype=np.float64), np.asarray(tm.faces), None), path)
    return path


def _probe_render_loss(trainer: Trainer) -> float:
    """Mean depth + normal + mask loss over fixed probe views (no gradient, no update)."""
    values = []
    with torch.no_grad():
        for record in trainer.data.records:
            for step in PROBE_STEPS:
                _, res = trainer.shape_loss(record, step, 0)
                values.append(sum(res.terms.get(t, 0.0) for t in RENDER_TERMS))
    return float(np.mean(values))


def _drop(tmp_path) -> tuple[float, float]:
    """(render loss after the warm-up, after the rendered steps) of one tiny run."""
    data = tmp_path / "data"
    data.mkdir()
    _sphere_with_a_fin(data / "finned.ply")
    trainer = Trainer(load_setup("focusing", TINY), data, tmp_path / "run", progress=False)
    try:
        trainer.fit(WARMUP)
        before = _probe_render_loss(trainer)
        trainer.fit()
        after = _probe_render_loss(trainer)
    finally:
        trainer.close()
    return before, after


def _detached(fn):
    """A broken render loss: the same value, no gradient (a renderer that does not
    differentiate, or a loss that detaches its prediction)."""
    return lambda pred, gt: fn(pred, gt).detach()


def test_rendered_steps_lower_the_render_loss(tmp_path):
    before, after = _drop(tmp_path)
    assert np.isfinite(before) and before > 0
    assert after < (1 - DROP) * before, (before, after)


@pytest.mark.slow
def test_a_render_loss_without_gradient_fails_the_check(tmp_path, monkeypatch):
    for name in ("depth_loss", "normal_loss", "mask_loss", "ssim_loss"):
        monkeypatch.setattr(losses, name, _detached(getattr(losses, name)))
    before, after = _drop(tmp_path)
    assert not after < (1 - DROP) * before, (before, after)
