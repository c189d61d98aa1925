"""The step profiler (engine.profile): phase times and peak tensor memory from torch's
profiler, checked on an analytic allocation pattern and on a real VAE step's phases."""

from __future__ import annotations

import pytest
import torch

from focusing.core.engine.profile import phase, profile_steps

from _training_fixtures import TINY, _isolated_cache  # noqa: F401 (autouse fixture)

MIB = 2**20


def test_peak_memory_per_phase_matches_the_allocations():
    keep = []

    def step():
        with phase("outer"):
            a = torch.empty(MIB, dtype=torch.uint8)          # 1 MiB, lives to the end of outer
            with phase("inner"):
                b = torch.empty(4 * MIB, dtype=torch.uint8)  # 4 MiB, freed inside inner
                del b
            c = torch.empty(2 * MIB, dtype=torch.uint8)      # 2 MiB: outer's level 3 < 5
            keep.append(c.numel())
            del a, c
        with phase("after"):
            d = torch.empty(3 * MIB, dtype=torch.uint8)
            del d

    rows = {r.name: r for r in profile_steps(step, 3)}
    assert set(rows) == {"step", "outer", "inner", "after"}
    # peaks above the level at the start of each step: inner 1 + 4, outer 5, after 3
    assert rows["inner"].peak_mib == pytest.approx(5.0, abs=0.01)
    assert rows["outer"].peak_mib == pytest.approx(5.0, abs=0.01)
    assert rows["after"].peak_mib == pytest.approx(3.0, abs=0.01)
    assert rows["step"].peak_mib == pytest.approx(5.0, abs=0.01)
    for r in rows.values():
        assert r.calls == 1 and r.seconds > 0
    assert rows["inner"].seconds <= rows["outer"].seconds <= rows["step"].seconds


def test_vae_steps_report_their_phases(tiny_data, tmp_path):
    from focusing.core.config import load_setup
    from focusing.core.vae.train.trainer import Trainer

    setup = load_setup("focusing", TINY + ["train.steps=4", "loss.tsdf_steps=2",
                                           "loss.warmup_render=false"])
    trainer = Trainer(setup, tiny_data, tmp_path / "run", progress=False)
    warm = {r.name for r in profile_steps(trainer.train_step, 1)}
    trainer.train_step()
    rendered = {r.name: r for r in profile_steps(trainer.train_step, 1)}
    trainer.close()
    assert warm == {"step", "encode", "select", "decode", "losses", "backward", "optimizer"}
    assert set(rendered) == warm | {"render_gt", "extract", "render"}
    assert sum(rendered[p].seconds for p in rendered if p != "step") <= rendered["step"].seconds
    assert rendered["backward"].peak_mib > 0
