"""Equal memory (`focusing compare --memory-cap GB`, issue 23): the resolution choice on given
peaks (fits, fits nowhere, TripoSF's alpha fallback), the budget keys, the choice against real
probes of a tiny model (each in a fresh process) with caps set from the peaks those probes
measured, and one comparison under a cap, trained and evaluated end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_compare import TINY_BUDGET
from typer.testing import CliRunner

from focusing.core import cli
from focusing.core.config import load_setup
from focusing.core.geometry.meshio import load_mesh
from focusing.core.geometry.voxelize import dilate_voxels, surface_voxels
from focusing.eval.compare import (
    CompareError, alphas_for, cap_settings, check_eval_resolution, choose_resolution, compare,
    eval_output, load_budget, log, memory_cap_plan, memory_cap_search, parse_specs, plan_jobs,
    verdict_text, with_resolution,
)
from focusing.eval.compare import pipeline
from focusing.eval.compare.memory_cap import probe_overrides
from meshdata import mesh_file, mesh_folder

HUGE_GB = 1.0e6  # a cap every probe fits under: the search measures every candidate


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FOCUSING_CACHE", str(tmp_path / "cache"))


def _budget(tmp_path: Path, extra: str = "", replace: tuple[str, str] = ("", "")):
    path = tmp_path / "tiny-cap.toml"
    path.write_text(TINY_BUDGET.replace(*replace) + extra)
    return load_budget(str(path))


def _peaks(table: dict):
    """probe(output, alpha) on given peaks (MiB): table[(output, alpha)], absent = failed."""
    calls = []

    def probe(output, alpha):
        calls.append((output, alpha))
        peak = table.get((output, alpha))
        return {"peak_mb": peak} if peak is not None else {"error": "killed by signal 9"}
    return probe, calls


# ------------------------------------------------------------------------------ pure choice
def test_the_choice_is_the_highest_output_under_the_cap():
    probe, calls = _peaks({(128, None): 900.0, (256, None): 3000.0, (512, None): 20000.0})
    r = choose_resolution([512, 128, 256], [None], 4000.0, probe)
    assert r["chosen"]["output"] == 256 and r["chosen"]["latent"] == 64
    assert r["chosen"]["alpha"] is None and r["chosen"]["peak_mb"] == 3000.0
    assert r["does_not_fit_at"] == 512 and r["not_probed"] == []
    assert calls == [(128, None), (256, None), (512, None)]  # increasing, each once
    assert [p["fits"] for p in r["probes"]] == [True, True, False]
    assert verdict_text(r) == "output 256; does not fit at 512"
    # every candidate fits: the highest, and nothing is called too big
    r = choose_resolution([128, 256, 512], [None], 20000.0, _peaks(
        {(128, None): 900.0, (256, None): 3000.0, (512, None): 20000.0})[0])
    assert r["chosen"]["output"] == 512 and r["does_not_fit_at"] is None
    assert verdict_text(r) == "output 512"


def test_a_setup_that_fits_at_no_output_is_said_and_the_rest_not_probed():
    probe, calls = _peaks({(128, None): 900.0, (256, None): 3000.0})
    r = choose_resolution([128, 256, 512], [None], 800.0, probe)
    assert r["chosen"] is None and r["does_not_fit_at"] == 128
    assert r["not_probed"] == [256, 512] and calls == [(128, None)]
    assert verdict_text(r) == "does not fit at 128"


def test_far_plane_alpha_fallback_keeps_the_largest_alpha_that_fits():
    tri = load_setup("triposf")
    alphas = alphas_for(tri, (1.0, 0.5, 0.3, 0.1))
    assert alphas == [0.5, 0.3, 0.1]  # its own, then each smaller one, largest first
    probe, calls = _peaks({(128, 0.5): 1000.0, (256, 0.5): 5000.0, (256, 0.3): 4200.0,
                           (256, 0.1): 3500.0, (512, 0.5): 40000.0, (512, 0.3): 39000.0,
                           (512, 0.1): 38000.0})
    r = choose_resolution([128, 256, 512], alphas, 4500.0, probe)
    assert (r["chosen"]["output"], r["chosen"]["alpha"]) == (256, 0.3)
    assert r["does_not_fit_at"] == 512
    # at 128 the own alpha fits (no smaller one probed); at 256 it stops at the first that fits
    assert calls == [(128, 0.5), (256, 0.5), (256, 0.3), (512, 0.5), (512, 0.3), (512, 0.1)]
    assert verdict_text(r) == ("output 256 (alpha 0.3); does not fit at 512 "
                               "(alpha 0.5, 0.3, 0.1 tried)")
    # a cap under every alpha at 256: output 128 at its own alpha
    r = choose_resolution([128, 256, 512], alphas, 3000.0, _peaks(
        {(128, 0.5): 1000.0, (256, 0.5): 5000.0, (256, 0.3): 4200.0, (256, 0.1): 3500.0})[0])
    assert (r["chosen"]["output"], r["chosen"]["alpha"]) == (128, 0.5)
    assert r["does_not_fit_at"] == 256 and r["not_probed"] == [512]
    # a setup configured at alpha 1.0 tries every listed alpha below it; focusing has no knob
    assert alphas_for(load_setup("triposf", ["selectors.params.far-plane.alpha=1.0"]),
                      (0.5, 0.1, 0.3, 1.0)) == [1.0, 0.5, 0.3, 0.1]
    assert alphas_for(load_setup("focusing"), (1.0, 0.5)) == [None]


def test_a_probe_that_was_not_measured_never_counts_as_fitting():
    probe, _ = _peaks({(128, 0.5): 1000.0, (256, 0.3): 100.0})  # 256 at 0.5 failed
    r = choose_resolution([128, 256], [0.5, 0.3], 5000.0, probe)
    assert (r["chosen"]["output"], r["chosen"]["alpha"]) == (256, 0.3)
    assert r["probes"][1]["fits"] is False and "error" in r["probes"][1]


# ------------------------------------------------------------------------------ budget keys
def test_memory_cap_and_eval_resolution_budget_keys(tmp_path):
    plain = _budget(tmp_path)
    assert plain.memory_cap_gb == 0 and plain.eval_resolution == 0 and plain.memory_cap == {}
    settings = cap_settings(plain, 2.5, 8)  # latent 8: outputs 32, 64, 128 by default
    assert settings.outputs == (32, 64, 128) and settings.alphas == (1.0, 0.5, 0.3, 0.1)
    assert settings.cap_mb == 2560.0 and settings.peak == "training"
    assert settings.probe_steps == 3 and settings.warmup_probe_steps == 2
    b = _budget(tmp_path, "[memory_cap]\noutputs = [64, 32]\nalphas = [0.2]\npeak = \"step\"\n",
                ("steps = 120\n", "steps = 120\nmemory_cap_gb = 3.0\neval_resolution = 64\n"))
    assert b.memory_cap_gb == 3.0 and b.eval_resolution == 64
    s = cap_settings(b, b.memory_cap_gb, 8)
    assert s.outputs == (32, 64) and s.alphas == (0.2,) and s.peak == "step"
    for extra, words in (("[memory_cap]\noutputs = [30]\n", "multiple of 4"),
                         ("[memory_cap]\nalphas = [1.5]\n", "(0, 1]"),
                         ("[memory_cap]\npeak = \"gpu\"\n", "training, step, process")):
        with pytest.raises(CompareError, match=words.replace("(", r"\(").replace(")", r"\)")
                           .replace("[", r"\[").replace("]", r"\]")):
            cap_settings(_budget(tmp_path, extra), 1.0, 8)
    with pytest.raises(CompareError, match="outputz"):
        _budget(tmp_path, "[memory_cap]\noutputz = [32]\n")
    off = cap_settings(_budget(tmp_path, "[memory_cap]\nprobe_evaluates = false\n"), 1.0, 8)
    assert not off.evaluates and off.as_dict()["probe_evaluates"] is False
    spec = parse_specs("triposf", plain.overrides)[0]
    assert probe_overrides(spec, plain, off, 32, 0.5)[-1] == "train.eval_every=0"
    with pytest.raises(CompareError, match="probe_evaluates = 'no': give true or false"):
        cap_settings(_budget(tmp_path, "[memory_cap]\nprobe_evaluates = \"no\"\n"), 1.0, 8)
    with pytest.raises(CompareError, match="eval_resolution"):
        _budget(tmp_path, replace=("steps = 120\n", "steps = 120\neval_resolution = 66\n"))
    with pytest.raises(CompareError, match="above 0"):
        cap_settings(plain, 0.0, 8)


def test_per_output_config_reaches_the_probe_and_the_training(tmp_path):
    budget = _budget(tmp_path, "[memory_cap]\noutputs = [32, 64]\n"
                     "[memory_cap.config.\"64\".model]\npoints_per_shape = 4096\n"
                     "[memory_cap.config.\"64\".selectors.params.zoom]\nn_max = 64\n")
    settings = cap_settings(budget, 1.0, 8)
    assert settings.overrides_at(64) == ["model.points_per_shape=4096",
                                         "selectors.params.zoom.n_max=64"]
    assert settings.overrides_at(32) == []
    spec = parse_specs("focusing:selectors.params.zoom.n_max=48", budget.overrides)[0]
    for output, points, n_max in ((32, 2048, 48), (64, 4096, 48)):
        over = probe_overrides(spec, budget, settings, output, None)
        at = [over.index(o) for o in settings.overrides_at(output)]
        assert all(len(budget.overrides) <= i < over.index("selectors.params.zoom.n_max=48")
                   for i in at)
        cfg = with_resolution(spec, budget, {"latent": output // 4, "alpha": None},
                              settings).config
        assert cfg["model"]["latent_resolution"] == output // 4
        # the output's table applies after the budget's, the setup's own spec after both
        assert cfg["model"]["points_per_shape"] == points
        assert cfg["selectors"]["params"]["zoom"]["n_max"] == n_max
        assert f"model.latent_resolution={output // 4}" in over and "train.steps=5" in over
        assert "loss.tsdf_steps=2" in over and "train.minutes=0" in over
        # a probe ends with one evaluation at its last step (train.eval_every's), as trainings do
        assert over[-1] == "train.eval_every=5" and settings.evaluates
    with pytest.raises(CompareError, match="outputs \\[128\\]"):
        cap_settings(_budget(tmp_path, "[memory_cap]\noutputs = [32, 64]\n"
                             "[memory_cap.config.\"128\".model]\npoints_per_shape = 1\n"),
                     1.0, 8)


def test_eval_resolution_must_be_a_power_of_two_multiple_of_the_trained_output(tmp_path):
    budget = _budget(tmp_path)
    specs = parse_specs("triposf,focusing", budget.overrides)  # trained at output 32
    check_eval_resolution(specs, 0)
    check_eval_resolution(specs, 64)
    check_eval_resolution(specs, 128)
    with pytest.raises(CompareError, match="eval_resolution 96"):
        check_eval_resolution(specs, 96)
    with pytest.raises(CompareError, match="eval_resolution 16"):
        check_eval_resolution(specs, 16)  # coarser than trained: refused without a cap
    # under a cap a setup trained finer than eval_resolution is evaluated at its own grid
    fine = [with_resolution(specs[0], budget, {"latent": 16, "alpha": 0.5})]
    check_eval_resolution(fine, 32, coarser_ok=True)
    assert eval_output(64, 32) == 64 and eval_output(32, 64) == 64 and eval_output(32, 0) == 32
    assert fine[0].label == "triposf" and fine[0].config["model"]["latent_resolution"] == 16
    assert fine[0].config["selectors"]["params"]["far-plane"]["alpha"] == 0.5


def test_a_cap_without_minutes_is_refused_before_any_probe(tmp_path):
    data = mesh_folder(tmp_path / "data", "couplingdown")
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_BUDGET)
    with pytest.raises(CompareError, match="minutes"):
        compare(data, "triposf,focusing", str(path), tmp_path / "out", memory_cap_gb=1.0)
    assert not (tmp_path / "out" / "memory-cap").exists()
    timed = _budget(tmp_path, replace=("steps = 120\n", "steps = 120\nminutes = 1.0\n"))
    with pytest.raises(CompareError, match="sets model.latent_resolution"):
        memory_cap_plan(timed, parse_specs("focusing:model.latent_resolution=16"), 1.0)
    assert memory_cap_plan(timed, parse_specs("focusing", timed.overrides)) is None  # no cap
    assert memory_cap_plan(timed, parse_specs("focusing", timed.overrides), 1.0).cap_gb == 1.0



def test_options_of_the_comparison_are_refused_with_scaling(tmp_path):
    # --scaling probes one step per setup and output; a cap, seeds or held-out meshes given
    # with it would be ignored, so they are refused before the output folder exists
    for extra in (["--memory-cap", "4.5"], ["--seeds", "2"], ["--eval", str(tmp_path)],
                  ["--resume"]):
        result = CliRunner().invoke(cli.get_app(), [
            "compare", "--data", str(tmp_path), "--scaling", "--out", str(tmp_path / "out"),
            *extra])
        assert result.exit_code != 0
        assert f"{extra[0]} applies to the comparison, not to --scaling" in result.output
        assert not (tmp_path / "out").exists()

# ------------------------------------------------------------------------------ real probes
@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """Real probes (each a fresh process) of both setups at output 32 and 64 (latent 8 and 16)
    under a cap every probe fits: every candidate is measured once."""
    tmp = tmp_path_factory.mktemp("probes")
    mp = pytest.MonkeyPatch()
    mp.setenv("FOCUSING_CACHE", str(tmp / "cache"))
    budget = _budget(tmp, "[memory_cap]\noutputs = [32, 64]\n")
    specs = parse_specs("triposf,focusing", budget.overrides)
    files = [mesh_file("couplingdown"), mesh_file("elephant-with-holes")]
    cap = memory_cap_search(specs, budget, cap_settings(budget, HUGE_GB, 8), files,
                            tmp / "mc", log)
    yield {"cap": cap, "budget": budget, "specs": specs, "files": files, "tmp": tmp}
    mp.undo()


def test_real_probes_measure_every_candidate_and_the_probe_mesh(measured):
    cap = measured["cap"]
    # the probe mesh: the one with the most active latent voxels at the lowest candidate
    counts = {f.name: len(dilate_voxels(surface_voxels(load_mesh(f), 8), 8))
              for f in measured["files"]}
    assert Path(cap["mesh"]).name == max(counts, key=counts.get)
    for label, alpha in (("triposf", 0.5), ("focusing", None)):
        r = cap["setups"][label]
        assert [(p["output"], p["alpha"]) for p in r["probes"]] == [(32, alpha), (64, alpha)]
        for p in r["probes"]:
            assert p["fits"] and "error" not in p
            # the capped figure is the training peak; the steps' own peaks lie under it
            assert p["peak_mb"] == p["training_peak_mb"] > 0
            assert p["own_step_peak_mb"] <= p["step_peak_mb"] <= p["child_max_rss_mb"]
            assert p["warmup_step_peak_mb"] <= p["step_peak_mb"]
            assert len(p["own_step_seconds"]) == 3  # probe_steps after warmup_probe_steps
            # the measured fit ended with one evaluation: the probe mesh reconstructed, scored
            name = f"{label}-{p['output']}" + (f"-alpha{alpha:g}" if alpha else "")
            rows = (measured["tmp"] / "mc" / "runs" / name / "quality.jsonl").read_text()
            assert [json.loads(x)["step"] for x in rows.splitlines()] == [5]
        assert r["chosen"]["output"] == 64 and r["does_not_fit_at"] is None
    # triposf decodes every latent voxel: twice the resolution costs measurably more
    tri = {p["output"]: p["peak_mb"] for p in cap["setups"]["triposf"]["probes"]}
    assert tri[64] > 1.5 * tri[32]


def _rule(peaks: dict, cap_mb: float):
    """The choice by its definition: the highest output whose measured peak fits, every lower
    candidate fitting too (the search stops at the first that does not)."""
    best = None
    for output in sorted(peaks):
        if peaks[output] > cap_mb:
            break
        best = output
    return best


def test_the_choice_against_measured_peaks_with_caps_from_them(measured):
    """Caps set from the probes' own peaks: just above the lower probe, just below the higher,
    at the higher, below both. The choice is the highest output whose measured peak fits."""
    for label, r in measured["cap"]["setups"].items():
        alpha = r["probes"][0]["alpha"]
        peaks = {p["output"]: p["peak_mb"] for p in r["probes"]}
        lo, hi = peaks[32], peaks[64]
        caps = [lo - 1.0, lo, hi, hi + 1.0, lo + 0.01 * abs(hi - lo), hi - 0.01 * abs(hi - lo)]
        for cap_mb in caps:
            res = choose_resolution([32, 64], [alpha], cap_mb,
                                    lambda o, a: {"peak_mb": peaks[o]})
            assert (res["chosen"] or {}).get("output") == _rule(peaks, cap_mb), (label, cap_mb)
        if label == "triposf":  # measured to grow (test above): the caps the issue names
            for cap_mb, want in ((lo + 0.01 * (hi - lo), 32), (hi - 0.01 * (hi - lo), 32),
                                 (hi, 64), (lo - 1.0, None)):
                res = choose_resolution([32, 64], [alpha], cap_mb,
                                        lambda o, a: {"peak_mb": peaks[o]})
                assert (res["chosen"] or {}).get("output") == want
                assert res["does_not_fit_at"] == {32: 64, 64: None, None: 32}[want]


def test_a_real_search_under_a_small_cap_stops_and_tries_smaller_alphas(measured, tmp_path):
    """Fresh probes of triposf under half its measured peak at output 32: both alphas are
    probed there, neither fits, and output 64 is never probed."""
    budget = _budget(tmp_path, "[memory_cap]\noutputs = [32, 64]\nalphas = [0.3]\n")
    lo = measured["cap"]["setups"]["triposf"]["probes"][0]["peak_mb"]
    settings = cap_settings(budget, 0.5 * lo / 1024.0, 8)
    cap = memory_cap_search(parse_specs("triposf", budget.overrides), budget, settings,
                            [mesh_file("couplingdown")], tmp_path / "mc", log)
    r = cap["setups"]["triposf"]
    assert [(p["output"], p["alpha"]) for p in r["probes"]] == [(32, 0.5), (32, 0.3)]
    for p in r["probes"]:
        assert p["fits"] == (p["peak_mb"] <= settings.cap_mb)
    assert r["chosen"] is None and r["does_not_fit_at"] == 32 and r["not_probed"] == [64]
    assert r["verdict"] == "does not fit at 32 (alpha 0.5, 0.3 tried)"


# ------------------------------------------------------------------------------ end to end
def test_compare_under_a_memory_cap_trains_each_setup_at_its_choice(tmp_path, monkeypatch):
    """The whole mode through the CLI: probes, training at the chosen resolution for the
    budget's minutes, evaluation at eval_resolution, report.json and report.md; then --resume
    of the finished comparison keeps its probes and trainings and reports the same choices."""
    data = mesh_folder(tmp_path / "data", "couplingdown")
    budget = tmp_path / "cap.toml"
    budget.write_text(
        TINY_BUDGET.replace("steps = 120\n", "steps = 100000\nminutes = 0.1\n"
                            "eval_resolution = 64\n")
        .replace("tsdf_steps = 112", "tsdf_steps = 4").replace("eval_every = 60", "eval_every = 0")
        + "[memory_cap]\noutputs = [32]\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli.get_app(), [
        "compare", "--data", str(data), "--out", str(out), "--setups", "triposf,focusing",
        "--budget", str(budget), "--memory-cap", str(HUGE_GB)])
    assert result.exit_code == 0, result.output
    rep = json.loads((out / "report.json").read_text())
    assert json.loads((out / "memory-cap.json").read_text())["cap_gb"] == HUGE_GB
    cap = rep["memory_cap"]
    assert cap["cap_gb"] == HUGE_GB and cap["outputs"] == [32]
    for label in ("triposf", "focusing"):
        s, row = rep["setups"][label], cap["table"][label]
        chosen = cap["setups"][label]["chosen"]
        assert chosen["output"] == row["output"] == s["resolution"]["output"] == 32
        assert s["resolution"]["evaluated"] == row["evaluated_at"] == 64
        assert row["probe_peak_mb"] == chosen["peak_mb"] > 0
        assert row["steps"]["mean"] == s["runs"][0]["steps"]
        assert row["training_within_cap"] is True and row["peak_in_training_mb"]["n"] == 1
        for mesh in s["runs"][0]["meshes"].values():
            assert mesh["output_resolution"] == 64
        cfg = json.loads((out / "runs" / label / "config.json").read_text())
        assert cfg["model"]["latent_resolution"] == 8
    assert rep["budget"]["eval_resolution"] == 64
    md = (out / "report.md").read_text()
    assert "## Equal memory" in md and "output res trained / evaluated" in md
    assert "| `triposf` | 32 | 0.5 |" in md and "quality reconstructed at output 64^3" in md

    def never(*args, **kwargs):
        raise AssertionError("--resume probed or trained again what had finished")

    monkeypatch.setattr(pipeline, "memory_cap_search", never)
    monkeypatch.setattr(pipeline, "launch_child", never)
    result = CliRunner().invoke(cli.get_app(), [
        "compare", "--data", str(data), "--out", str(out), "--setups", "triposf,focusing",
        "--budget", str(budget), "--memory-cap", str(HUGE_GB), "--resume"])
    assert result.exit_code == 0, result.output
    again = json.loads((out / "report.json").read_text())
    assert sorted(again["resumed_runs"]) == ["runs/focusing", "runs/shared-warmup", "runs/triposf"]
    for label in ("triposf", "focusing"):
        assert again["setups"][label]["resolution"] == rep["setups"][label]["resolution"]
        assert again["memory_cap"]["table"][label] == rep["memory_cap"]["table"][label]
        assert again["setups"][label]["runs"][0]["history"] == \
            rep["setups"][label]["runs"][0]["history"]


# ------------------------------------------------------------------------------ shipped budgets
@pytest.mark.parametrize("name, latent, evaluated", [("large", 64, 256),
                                                     ("large-finer", 32, 256)])
def test_the_large_budgets_parse_and_plan(name, latent, evaluated, tmp_path):
    """S1's two variants: focusing at output 256 directly, or at 128 evaluated at 256; one
    training job each, 78 optimisation minutes (90 in all on 2 cores), no cap."""
    budget = load_budget(name)
    assert budget.name == name and 0 < budget.minutes <= 80 and budget.own_minutes == 0
    specs = parse_specs("focusing", budget.overrides)
    cfg = specs[0].config
    assert cfg["model"]["latent_resolution"] == latent
    assert cfg["model"]["points_per_shape"] == 8192 * (latent // 32) ** 2
    assert cfg["loss"]["tsdf_steps"] == cfg["train"]["restart_at"] < budget.steps
    assert memory_cap_plan(budget, specs) is None  # eval_resolution reachable, no cap
    assert eval_output(4 * latent, budget.eval_resolution) == evaluated
    jobs = plan_jobs(specs, budget, tmp_path / "out")
    assert len(jobs) == 1 and not jobs[0].is_warmup and jobs[0].fork_from is None
    over = jobs[0].child_job(budget, tmp_path / "data")["overrides"]
    assert f"train.minutes={budget.minutes}" in over and f"model.latent_resolution={latent}" in over
    # the same model widths in both variants: only the grid and what follows it differ
    other = load_budget("large-finer" if name == "large" else "large")
    ocfg = parse_specs("focusing", other.overrides)[0].config
    for key in ("encoder", "decoder", "pointnet", "upsampler", "cameras"):
        assert cfg[key] == ocfg[key], key


def test_the_equal_memory_budget_plans_both_outputs(tmp_path):
    budget = load_budget("equal-memory")
    specs = parse_specs("triposf,focusing", budget.overrides)
    settings = memory_cap_plan(budget, specs, 4.5)
    assert settings.outputs == (128, 256) and settings.cap_mb == 4.5 * 1024
    assert settings.alphas == (1.0, 0.5, 0.3, 0.1) and settings.peak == "training"
    assert alphas_for(specs[0].config, settings.alphas) == [0.5, 0.3, 0.1]
    for output, points, n_max in ((128, 8192, 128), (256, 32768, 256)):
        for s in specs:
            cfg = with_resolution(s, budget, {"latent": output // 4, "alpha": None},
                                  settings).config
            assert cfg["model"]["latent_resolution"] == output // 4
            assert cfg["model"]["points_per_shape"] == points
            assert cfg["selectors"]["params"]["zoom"]["n_max"] == n_max
            assert cfg["train"]["restart_at"] == cfg["loss"]["tsdf_steps"]
    # a cap needs equal wall time: a budget of steps alone cannot give it, nor one of own
    # minutes (the small budget: they count from a warm-up that other resolutions cannot share)
    steps_only = _budget(tmp_path)
    with pytest.raises(CompareError, match="steps alone"):
        memory_cap_plan(steps_only, parse_specs("triposf,focusing", steps_only.overrides), 4.5)
    small = load_budget("small")
    with pytest.raises(CompareError, match="cannot share"):
        memory_cap_plan(small, parse_specs("triposf,focusing", small.overrides), 4.5)
