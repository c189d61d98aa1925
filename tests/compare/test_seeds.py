"""`focusing compare --seeds K` (issue 22, R2): the aggregation over seeds against a hand
computation, the spread rule on hand-made numbers (both outcomes), a headline that follows the
rule, and the job list: one shared warm-up per seed, forked by every setup of that seed."""

from __future__ import annotations

import json

import pytest
from test_compare import TINY_BUDGET
from test_compare import _tiny_budget as _budget
from typer.testing import CliRunner

from focusing.core import cli
from focusing.core.config import resolve_setup
from focusing.eval.compare import (
    CompareError, parse_specs, plan_jobs, prepare_out,
)
from focusing.eval.report import (
    aggregate, comparison, exceeds_spread, headline, summarize_run, summarize_setup,
)
from meshdata import mesh_folder


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FOCUSING_CACHE", str(tmp_path / "cache"))


# ------------------------------------------------------------------------------ aggregation
def test_aggregate_against_a_hand_computation():
    # mean (0.80 + 0.84 + 0.78) / 3 = 0.806667; squared deviations 0.0000444 + 0.0011111
    # + 0.0007111 = 0.0018667; sample variance / (3 - 1) = 0.00093333; std 0.0305505
    st = aggregate([0.80, 0.84, 0.78])
    assert st["mean"] == pytest.approx(0.8066667, abs=1e-7)
    assert st["std"] == pytest.approx(0.0305505, abs=1e-7)
    assert (st["min"], st["max"], st["n"]) == (0.78, 0.84, 3)
    # a seed without a value (a failed reconstruction) is left out and n says so
    assert aggregate([0.5, None, float("nan"), 0.7]) == {
        "mean": pytest.approx(0.6), "std": pytest.approx(0.1414214, abs=1e-7), "min": 0.5,
        "max": 0.7, "n": 2}
    assert aggregate([0.42]) == {"mean": 0.42, "std": 0.0, "min": 0.42, "max": 0.42, "n": 1}
    assert aggregate([]) == {"mean": None, "std": None, "min": None, "max": None, "n": 0}


def _history(seconds: list[float], kept: list[int]) -> dict:
    steps = [{"step": i + 1, "seconds": s, "peak_memory_mb": 10.0 * (i + 1),
              "terms": {"total": 1.0 / (i + 1)},
              "counts": {"latent_all": 100, "latent_kept": k, "output_all": 50, "output_kept": 5,
                         "triangles": 8}}
             for i, (s, k) in enumerate(zip(seconds, kept))]
    return {"steps": steps, "train_peak_mb": 99.0, "rss_before_fit_mb": 200.0, "prep_s": 1.0}


def _row(fscore: float | None) -> dict:
    if fscore is None:
        return {"split": "train", "reconstruction": None, "error": "empty"}
    return {"split": "train", "reconstruction": "x.ply", **{k: fscore for k in (
        "chamfer_l2", "chamfer_l1", "fscore", "precision", "recall", "normal_consistency",
        "floor_chamfer_l2", "floor_fscore")}}


def test_a_setup_over_two_seeds_against_a_hand_computation():
    # two warm-up steps, then three own steps per seed
    runs = [summarize_run(_history([9, 9, 1.0, 3.0, 2.0], [100, 100, 10, 20, 30]), 500.0, 60.0,
                          {"a": _row(0.9), "b": _row(0.5)}, warmup_steps=2),
            summarize_run(_history([9, 9, 4.0, 4.0, 5.0], [100, 100, 40, 40, 40]), 700.0, 80.0,
                          {"a": _row(0.6), "b": _row(None)}, warmup_steps=2)]
    for run, seed in zip(runs, (0, 1)):
        run.update(seed=seed, first_reached_s={"0.5": None})
    s = summarize_setup(runs)
    assert s["seeds"] == [0, 1]
    # own steps: medians 2.0 and 4.0 s -> mean 3, sample std sqrt(2); latents 20 and 40
    own = s["own_steps"]
    assert own["seconds_per_step"] == {"mean": 3.0, "std": pytest.approx(2 ** 0.5), "min": 2.0,
                                       "max": 4.0, "n": 2}
    assert own["latents_decoded_per_step"]["mean"] == pytest.approx(30.0)
    assert own["peak_memory_mb"] == {"mean": 50.0, "std": 0.0, "min": 50.0, "max": 50.0, "n": 2}
    assert own["steps"]["mean"] == 3 and s["warmup"]["steps"]["mean"] == 2
    assert s["warmup"]["latents_decoded_per_step"]["mean"] == 100
    # per mesh: a = 0.9, 0.6 -> 0.75 +- 0.212132; b reconstructed by seed 0 only
    a, b = s["meshes"]["a"], s["meshes"]["b"]
    assert a["fscore"]["mean"] == pytest.approx(0.75)
    assert a["fscore"]["std"] == pytest.approx(0.2121320, abs=1e-7)
    assert a["reconstructed"] == 2 and b["reconstructed"] == 1
    assert b["fscore"] == {"mean": 0.5, "std": 0.0, "min": 0.5, "max": 0.5, "n": 1}
    # mean over meshes per seed (0.7, then 0.6 over the one mesh it reconstructed), then seeds
    q = s["quality"]["train"]
    assert q["fscore"]["mean"] == pytest.approx(0.65)
    assert q["fscore"]["std"] == pytest.approx(0.0707107, abs=1e-7)
    assert (q["fscore"]["min"], q["fscore"]["max"]) == (pytest.approx(0.6), pytest.approx(0.7))
    assert q["reconstructed"]["mean"] == 1.5 and q["meshes"] == 2
    # over every mesh, the lost b counted as 0: seed 0 (0.9 + 0.5) / 2 = 0.7, seed 1
    # (0.6 + 0) / 2 = 0.3; the mean over reconstructed meshes (0.65) hides that loss
    assert q["fscore_all"]["mean"] == pytest.approx(0.5)
    assert (q["fscore_all"]["min"], q["fscore_all"]["max"]) == (pytest.approx(0.3),
                                                                pytest.approx(0.7))


# ------------------------------------------------------------------------------ spread rule
@pytest.mark.parametrize("a, b, beyond", [
    ([0.80, 0.81, 0.79], [0.84, 0.85, 0.83], True),    # 0.79..0.81 below 0.83..0.85
    ([0.84, 0.85, 0.83], [0.80, 0.81, 0.79], True),    # either order
    ([0.80, 0.83, 0.79], [0.82, 0.84, 0.81], False),   # 0.79..0.83 overlaps 0.81..0.84
    ([0.80, 0.82], [0.82, 0.84], False),               # touching ranges overlap
    ([0.50], [0.90], False),                           # one seed: never beyond the spread
    ([0.50, 0.51], [0.90], False),                     # one of them has one seed
    ([0.50, 0.51], [0.90, 0.91], True),                # two seeds each suffice
])
def test_the_spread_rule_on_hand_made_numbers(a, b, beyond):
    assert exceeds_spread(aggregate(a), aggregate(b)) is beyond


def _setup(fscore, chamfer=None, seconds=None) -> dict:
    k = len(fscore)
    return {"seeds": list(range(k)),
            "own_steps": {"seconds_per_step": aggregate(seconds or [1.0] * k),
                          "peak_memory_mb": aggregate([100.0] * k),
                          "latents_decoded_per_step": aggregate([10.0] * k)},
            "quality": {"train": {"fscore": aggregate(fscore),
                                  # no mesh lost: the all-meshes F is the same figure
                                  "fscore_all": aggregate(fscore),
                                  "chamfer_l2": aggregate(chamfer or [1e-4] * k),
                                  "normal_consistency": aggregate([0.9] * k)}}}


def _headline(tri: dict, foc: dict) -> tuple[dict, str]:
    comp = comparison({"triposf": tri, "focusing": foc}, "triposf")
    return comp["against_reference"]["focusing"], "\n".join(headline({"comparison": comp}))


def test_the_headline_calls_a_difference_real_only_beyond_the_spread():
    # disjoint ranges over 3 seeds: focusing's F is better, and the headline says so
    c, text = _headline(_setup([0.80, 0.81, 0.79]), _setup([0.84, 0.85, 0.83]))
    f = next(v for v in c["verdicts"] if v["group"] == "train" and v["figure"] == "fscore")
    assert f["exceeds_spread"] and f["better"] == "focusing"
    assert f["difference"] == pytest.approx(0.04) == c["fscore_difference"]
    assert "**focusing is better than triposf** in F-score on the training meshes" in text
    assert "2 of 6 differences exceed the spread" in text  # F over reconstructed and all
    # overlapping ranges: the same sign of difference, but no claim
    c, text = _headline(_setup([0.80, 0.83, 0.79]), _setup([0.82, 0.84, 0.81]))
    assert not any(v["exceeds_spread"] for v in c["verdicts"])
    assert "is better than" not in text
    assert "no difference exceeds the spread" in text
    assert "F-score on the training meshes: focusing 0.823, triposf 0.807 (higher is better); " \
           "the difference is within the spread" in text
    # one seed: a large difference is still not called real
    c, text = _headline(_setup([0.5]), _setup([0.9]))
    assert "is better than" not in text and "with one seed no difference" in text
    assert c["verdicts"][0]["reference"]["n"] == 1


def test_lower_is_better_figures_and_a_better_reference():
    # Chamfer L2 and time per step: lower is better; the reference can be the better one
    c, text = _headline(_setup([0.8, 0.81], chamfer=[5e-5, 6e-5], seconds=[0.2, 0.25]),
                        _setup([0.8, 0.81], chamfer=[1e-5, 1.2e-5], seconds=[1.0, 1.1]))
    by = {v["figure"]: v for v in c["verdicts"]}
    assert by["chamfer_l2"]["better"] == "focusing"
    assert by["seconds_per_step"]["better"] == "triposf"
    assert by["fscore"]["better"] is None
    assert "**focusing is better than triposf** in Chamfer L2 on the training meshes" in text
    assert "**triposf is better than focusing** in time per own step" in text


# ------------------------------------------------------------------------------ the job list
def test_each_seed_gets_its_own_warmup_and_its_setups_share_it(tmp_path):
    budget = _budget(tmp_path)
    specs = parse_specs("triposf,focusing", budget.overrides)
    out = tmp_path / "out"
    jobs = plan_jobs(specs, budget, out, 3)
    assert [(j.seed, j.is_warmup, j.spec.label) for j in jobs] == [
        (s, w, lb) for s in (0, 1, 2)
        for w, lb in ((True, "triposf"), (False, "triposf"), (False, "focusing"))]
    warm = {j.seed: j for j in jobs if j.is_warmup}
    assert len({j.run_dir for j in warm.values()}) == 3
    for j in jobs:
        level = out / "runs" / f"seed-{j.seed}"
        assert j.child_job(budget, tmp_path)["overrides"][-1] == f"train.seed={j.seed}"
        if j.is_warmup:
            assert j.run_dir == level / "shared-warmup" and j.stop_at == 112
            assert j.fork_from is None and not j.child_job(budget, tmp_path)["resume"]
        else:  # forked from its own seed's warm-up, never another seed's
            assert j.run_dir == level / j.spec.slug and j.fork_from == warm[j.seed].run_dir
            assert j.recon_dir == out / "recon" / f"seed-{j.seed}" / j.spec.slug
            assert j.child_job(budget, tmp_path)["resume"]
    # one seed: the folders of a plain comparison, and each setup's own seed
    one = plan_jobs(specs, budget, out, 1)
    assert [j.run_dir for j in one] == [out / "runs" / n
                                        for n in ("shared-warmup", "triposf", "focusing")]
    assert {j.seed for j in one} == {0}


def test_seeds_without_a_shared_warmup_and_bad_seed_requests(tmp_path):
    budget = _budget(tmp_path)
    # a model change: nothing to share, each run trains its own warm-up at its seed
    specs = parse_specs("triposf,focusing:decoder.depth=2", budget.overrides)
    jobs = plan_jobs(specs, budget, tmp_path, 2)
    assert not any(j.is_warmup or j.fork_from for j in jobs) and len(jobs) == 4
    assert sorted(j.seed for j in jobs) == [0, 0, 1, 1]
    with pytest.raises(CompareError, match="--seeds 0"):
        plan_jobs(specs, budget, tmp_path, 0)
    split = parse_specs("triposf,focusing:train.seed=5", budget.overrides)
    with pytest.raises(CompareError, match="different train.seed"):
        plan_jobs(split, budget, tmp_path, 2)
    assert [j.seed for j in plan_jobs(split, budget, tmp_path, 1)] == [0, 5]  # as before


def test_deterministic_mode_stays_available_with_seeds(tmp_path):
    budget = _budget(tmp_path)
    budget.overrides.append("train.deterministic=true")  # as a budget's [config.train] sets it
    for job in plan_jobs(parse_specs("triposf,focusing", budget.overrides), budget, tmp_path, 2):
        cfg = resolve_setup(job.spec.base, job.child_job(budget, tmp_path)["overrides"])
        assert cfg.train.deterministic and cfg.train.seed == job.seed


def test_an_earlier_comparison_in_either_layout_is_refused(tmp_path):
    budget = _budget(tmp_path)
    specs = parse_specs("triposf,focusing", budget.overrides)
    out = tmp_path / "out"
    (out / "runs" / "focusing").mkdir(parents=True)  # a one-seed comparison was here
    with pytest.raises(CompareError, match="already holds runs of focusing"):
        prepare_out(out, plan_jobs(specs, budget, out, 2), overwrite=False)
    prepare_out(out, plan_jobs(specs, budget, out, 2), overwrite=True)
    assert not (out / "runs" / "focusing").exists()
    (out / "runs" / "seed-1").mkdir()  # a several-seed comparison was here
    with pytest.raises(CompareError, match="seed-1"):
        prepare_out(out, plan_jobs(specs, budget, out, 1), overwrite=False)


# ------------------------------------------------------------------------------ a real run
SEEDS_BUDGET = TINY_BUDGET.replace("steps = 120\n", "steps = 24\nmeshes = 1\n", 1).replace(
    "render_views = 1", "render_views = 0").replace("tsdf_steps = 112", "tsdf_steps = 20").replace(
    "eval_every = 60", "eval_every = 0")


def test_compare_with_two_seeds_forks_each_seeds_warmup(tmp_path):
    data = mesh_folder(tmp_path / "data", "couplingdown")
    budget = tmp_path / "seeds.toml"
    budget.write_text(SEEDS_BUDGET)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli.get_app(), [
        "compare", "--data", str(data), "--out", str(out), "--setups", "triposf,focusing",
        "--budget", str(budget), "--seeds", "2"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["seed-0", "seed-1"]
    warm_losses = {}
    for seed in (0, 1):
        level = out / "runs" / f"seed-{seed}"
        assert sorted(p.name for p in level.iterdir()) == ["focusing", "shared-warmup", "triposf"]
        for name in ("shared-warmup", "triposf", "focusing"):
            assert json.loads((level / name / "config.json").read_text())["train"]["seed"] == seed
        # focusing resumed from this seed's warm-up checkpoint at step 20
        changes = json.loads((level / "focusing" / "config_changes.json").read_text())
        assert changes[0]["step"] == 20
        warm = json.loads((level / "shared-warmup" / "history.json").read_text())
        warm_losses[seed] = [s["terms"]["total"] for s in warm["steps"]]
        assert len(warm_losses[seed]) == 20
        assert (out / "recon" / f"seed-{seed}" / "focusing").is_dir()
    assert warm_losses[0] != warm_losses[1]  # two seeds, two warm-ups
    rep = json.loads((out / "report.json").read_text())
    assert rep["shared_warmup"]["seeds"] == [0, 1] and rep["comparison"]["seeds"] == 2
    for s in rep["setups"].values():
        assert s["seeds"] == [0, 1] and [r["seed"] for r in s["runs"]] == [0, 1]
        assert s["own_steps"]["steps"] == {"mean": 4, "std": 0.0, "min": 4, "max": 4, "n": 2}
        for r, seed in zip(s["runs"], (0, 1)):
            # each setup's history starts with its own seed's warm-up
            assert [h["loss_total"] for h in r["history"][:20]] == warm_losses[seed]
        f = s["quality"]["train"]["fscore"]
        assert set(f) == {"mean", "std", "min", "max", "n"} and f["n"] <= 2
    md = (out / "report.md").read_text()
    assert "Seeds per setup: 2" in md and "over 2 seeds" in md
