"""The ablation budget (issue 22, R1 and R3): a render-free arm that shares the warm-up, one
warm-up for every seed, and equal own minutes after it."""

from __future__ import annotations

import shutil

import pytest
import torch

from focusing.eval.compare import (
    CompareError, load_budget, own_time, parse_specs, plan_jobs, shared_warmup_steps,
)

from meshdata import mesh_file
from test_compare import TINY_BUDGET

R1_SETUPS = "focusing:loss.tsdf_steps=1000000,triposf,focusing,focusing:selector=depth-carving"
R3_SETUPS = ("focusing:loss.tsdf_steps=1000000,triposf:selectors.params.far-plane.alpha=0.3,"
             "triposf,triposf:selectors.params.far-plane.alpha=1.0,focusing,"
             "focusing:selector=depth-carving,focusing:selector=frustum")


def _budget(tmp_path, extra: str = ""):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_BUDGET.replace("[budget]\n", "[budget]\n" + extra, 1))
    return load_budget(str(path))


def test_a_longer_render_free_warmup_shares_the_shortest():
    budget = load_budget("ablation")
    specs = parse_specs(R3_SETUPS, budget.overrides)
    assert shared_warmup_steps(specs, budget.steps) == 2200
    assert specs[0].config["loss"]["tsdf_steps"] == 1000000  # continues render-free after
    assert budget.own_minutes > 0 and budget.one_warmup and budget.minutes == 0
    assert {s.config["train"]["restart_at"] for s in specs} == {2200}


def test_shorter_warmups_share_the_shortest_and_other_changes_share_nothing(tmp_path):
    budget = _budget(tmp_path)
    base = budget.overrides
    assert shared_warmup_steps(parse_specs("focusing,focusing:loss.tsdf_steps=50", base),
                               120) == 50
    assert shared_warmup_steps(parse_specs("focusing,focusing:loss.tsdf=2.0", base), 120) == 0


def test_render_free_steps_do_not_depend_on_the_warmups_length(tmp_path):
    """Why the render-free arm may fork from the shared warm-up: its first steps give
    bitwise-equal weights to a setup whose warm-up ends sooner (deterministic mode)."""
    from safetensors.torch import load_file

    from focusing.core.config import resolve_setup
    from focusing.core.engine.checkpoint import weights_path
    from focusing.core.vae.train.trainer import Trainer

    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(mesh_file("couplingdown"), data)
    budget = _budget(tmp_path)
    weights = {}
    for tsdf_steps in (10, 1000):
        setup = resolve_setup("focusing", budget.overrides + [
            "train.steps=120", "train.eval_every=0", "train.deterministic=true",
            f"loss.tsdf_steps={tsdf_steps}", "train.restart_at=10"])
        run = tmp_path / f"run-{tsdf_steps}"
        trainer = Trainer(setup, data, run, progress=False)
        trainer.fit(6)
        trainer.close()
        weights[tsdf_steps] = load_file(weights_path(run, 6))
    for key, value in weights[10].items():
        assert torch.equal(value, weights[1000][key]), key


def test_one_warmup_serves_every_seed(tmp_path):
    budget = _budget(tmp_path, "one_warmup = true\nown_minutes = 1.5\n")
    specs = parse_specs("focusing:loss.tsdf_steps=100000,focusing", budget.overrides)
    jobs = plan_jobs(specs, budget, tmp_path / "out", 3)
    warm = [j for j in jobs if j.is_warmup]
    assert len(warm) == 1 and warm[0].seed == 0 and warm[0].stop_at == 112
    own = [j for j in jobs if not j.is_warmup]
    assert sorted(j.seed for j in own) == [0, 0, 1, 1, 2, 2]
    assert all(j.fork_from == warm[0].run_dir and j.warmup_seed == 0 for j in own)
    assert len({j.run_dir for j in own}) == 6


def test_own_minutes_add_the_warmups_seconds():
    history = {"steps": [{"seconds": 30.0}, {"seconds": 60.0}]}
    assert own_time(history, 2.0) == ["train.minutes=3.5"]
    assert own_time(history, 0.0) == []


def test_own_minutes_need_a_shared_warmup_and_exclude_minutes(tmp_path):
    with pytest.raises(CompareError, match="not both"):
        _budget(tmp_path, "own_minutes = 1.0\nminutes = 3.0\n")
    budget = _budget(tmp_path, "own_minutes = 1.0\n")
    specs = parse_specs("focusing,focusing:decoder.depth=2", budget.overrides)
    with pytest.raises(CompareError, match="share none"):
        plan_jobs(specs, budget, tmp_path / "out", 1)


def test_a_render_free_arms_own_steps_start_at_the_fork():
    """Its loss.tsdf_steps lies beyond its last step: the report must still count the steps
    after the shared warm-up as its own (they were 'n/a' in the first ablation report)."""
    from focusing.eval.report import summarize_run

    steps = [{"step": i, "seconds": 0.1 * i, "peak_memory_mb": 10.0 * i,
              "counts": {"latent_kept": 512}, "terms": {"total": 1.0}} for i in range(1, 6)]
    history = {"steps": steps, "train_peak_mb": 50.0, "rss_before_fit_mb": 1.0, "prep_s": 0.0,
               "shared_warmup": {"steps": 3, "fit_s": 0.6, "train_peak_mb": 30.0}}
    run = summarize_run(history, 60.0, 1.0, {}, warmup_steps=1_000_000)
    assert run["own_steps"]["steps"] == 2 and run["warmup"]["steps"] == 3
    assert run["own_steps"]["peak_memory_mb"] == 50.0
    assert run["own_steps"]["seconds_per_step"] == pytest.approx(0.45)
