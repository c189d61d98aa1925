"""`focusing compare`: setup specs (ablation of one key), budgets, the log-log fit, and one real
comparison with a tiny budget on two real meshes whose report is checked field by field
against independent recomputations (voxel counts from the geometry layer, means, medians)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np
import torch
import pytest
import typer

from focusing.core import cli
from typer.testing import CliRunner

from focusing.core.geometry.meshio import load_mesh
from focusing.core.geometry.voxelize import dilate_voxels, surface_voxels
from focusing.core.config import load_setup
from focusing.core.data.dataset import mesh_files, shape_order
from focusing.eval.compare import (
    CompareError, load_budget, minutes_after_warmup, parse_spec, parse_specs, split_specs,
)
from focusing.eval.scaling import loglog_fit, predict
from meshdata import mesh_folder

TINY_BUDGET = """
[budget]
name = "tiny"
description = "test"
steps = 120
eval_points = 3000
render_views = 1
render_size = 40
threads = 1
[config.model]
latent_resolution = 8
points_per_shape = 2048
[config.cameras]
image_size = 32
[config.encoder]
width = 16
depth = 1
heads = 2
window = 4
[config.decoder]
width = 16
depth = 1
heads = 2
window = 4
[config.pointnet]
hidden = 8
out = 8
[config.upsampler]
channels = [8, 8]
[config.loss]
tsdf_views = 4
# 112 render-free warm-up steps give the decoder (an empty field at step 0) a surface;
# the last 8 steps are each setup's own, rendered step
tsdf_steps = 112
warmup_latents = 0
[config.train]
checkpoint_every = 0
lr = 5e-3
eval_every = 60
[config.evaluation]
image_every = 0
[config.selectors.params.zoom]
n_min = 8
n_max = 32
"""


EMPTY = {"mean": None, "std": None, "min": None, "max": None, "n": 0}


def one_seed(x) -> dict:
    """A figure of a one-seed comparison as report.json gives it: {mean, std, min, max, n}."""
    return {"mean": pytest.approx(x), "std": 0.0, "min": pytest.approx(x),
            "max": pytest.approx(x), "n": 1}


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("FOCUSING_CACHE", str(tmp_path / "cache"))


# ------------------------------------------------------------------------------ specs
def test_upsampler_shorthand_changes_only_the_upsampler():
    spec = parse_spec("focusing:upsampler=subdivide")
    plain = load_setup("focusing")
    assert spec.label == "focusing:upsampler=subdivide" and spec.base == "focusing"
    assert spec.config["upsampler"]["name"] == "subdivide"
    assert plain["upsampler"]["name"] != "subdivide"
    # everything else is the plain setup
    spec.config["upsampler"]["name"] = plain["upsampler"]["name"]
    assert spec.config == plain


def test_selector_shorthand_replaces_the_setups_own_stage():
    foc = parse_spec("focusing:selector=frustum").config
    assert foc["selectors"]["latent"] == ["frustum"]
    assert foc["selectors"]["output"] == load_setup("focusing")["selectors"]["output"]
    tri = parse_spec("triposf:selector=frustum").config
    assert tri["selectors"]["output"] == ["frustum"] and tri["selectors"]["latent"] == []


def test_generic_key_and_several_overrides_match_load_setup():
    spec = parse_spec("focusing:decoder.depth=4:upsampler=subdivide",
                      ["model.latent_resolution=16"])
    ref = load_setup("focusing", ["model.latent_resolution=16", "decoder.depth=4",
                                  "upsampler.name=subdivide"])
    assert spec.config == ref
    assert spec.overrides == ["decoder.depth=4", "upsampler.name=subdivide"]


def test_setup_list_splits_outside_brackets():
    text = 'triposf, focusing:selectors.latent=["frustum","zoom"] ,focusing'
    assert split_specs(text) == ["triposf", 'focusing:selectors.latent=["frustum","zoom"]',
                                 "focusing"]
    specs = parse_specs("triposf,focusing:selectors.latent=[\"frustum\",\"zoom\"]")
    assert specs[1].config["selectors"]["latent"] == ["frustum", "zoom"]


@pytest.mark.parametrize("spec, words", [
    ("focusing:decoder.deepness=4", ["focusing:decoder.deepness=4", "decoder.deepness", "depth"]),
    ("focusing:frustum", ["not of the form key=value"]),
    ("focusing:upsampler=no-such-upsampler", ["no-such-upsampler"]),
    ("no-such-setup", ["no-such-setup"]),
    (":decoder.depth=2", ["no setup name"]),
])
def test_bad_specs_error_clearly(spec, words):
    with pytest.raises(CompareError) as err:
        parse_spec(spec)
    for w in words:
        assert w in str(err.value)


def test_same_setup_twice_is_refused():
    with pytest.raises(CompareError, match="share a run folder"):
        parse_specs("focusing,focusing")


# ------------------------------------------------------------------------------ budgets
@pytest.mark.parametrize("name", ["small", "medium"])
def test_shipped_budgets_resolve_for_both_setups(name):
    budget = load_budget(name)
    assert budget.steps >= 1 and budget.tau == 0.005
    specs = parse_specs("triposf,focusing", budget.overrides)
    # the same model for both: only selectors and cameras differ
    for key in ("model", "encoder", "decoder", "pointnet", "upsampler", "loss", "train"):
        assert specs[0].config[key] == specs[1].config[key], key
    sc = parse_specs("triposf,focusing", [o for o in load_budget(name).overrides])
    assert sc[0].config["model"]["latent_resolution"] == sc[1].config["model"]["latent_resolution"]


def test_budget_with_unknown_key_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[budget]\nsteps = 2\nstepz = 3\n")
    with pytest.raises(CompareError, match="stepz"):
        load_budget(str(bad))
    bad.write_text("[budget]\nsteps = 2\n[config.model]\nlatent_res = 8\n")
    with pytest.raises(CompareError, match="latent_res"):
        parse_specs("focusing", load_budget(str(bad)).overrides)
    with pytest.raises(CompareError, match="small"):
        load_budget("no-such-budget")


# ------------------------------------------------------------------------------ fits
def test_loglog_fit_recovers_a_power_law():
    x = np.array([128, 256, 512], dtype=float)
    y = 3.0e-4 * x ** 2.5
    fit = loglog_fit(x, y)
    assert fit["exponent"] == pytest.approx(2.5, abs=1e-9)
    assert predict(fit, 1024) == pytest.approx(3.0e-4 * 1024 ** 2.5, rel=1e-9)
    assert loglog_fit([128], [1.0]) is None


# ------------------------------------------------------------------------------ end to end
@pytest.fixture
def app() -> typer.Typer:
    """The `focusing` app, with every registered command (focusing-eval's among them)."""
    return cli.get_app()


def test_compare_cli_rejects_a_bad_spec_before_training(app, tmp_path):
    data = mesh_folder(tmp_path / "data", "couplingdown")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["compare", "--data", str(data), "--out", str(out),
                                      "--setups", "triposf,focusing:decoder.deepness=4"])
    assert result.exit_code == 2
    assert "decoder.deepness" in result.output
    assert not (out / "runs").exists()


def test_compare_tiny_budget_on_two_real_meshes(app, tmp_path):
    data = mesh_folder(tmp_path / "data", "couplingdown", "elephant-with-holes")
    budget = tmp_path / "tiny.toml"
    budget.write_text(TINY_BUDGET)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["compare", "--data", str(data), "--out", str(out),
                                      "--setups", "triposf,focusing", "--budget", str(budget),
                                      "--json"])
    assert result.exit_code == 0, result.output
    rep = json.loads((out / "report.json").read_text())
    assert set(rep["setups"]) == {"triposf", "focusing"}
    names = ["couplingdown", "elephant-with-holes"]
    assert sorted(rep["meshes"]) == names

    # latent voxel counts per step against the geometry layer (independent of the trainer)
    r = 8
    files = mesh_files(data)
    n_active = [len(dilate_voxels(surface_voxels(load_mesh(f), r), r)) for f in files]
    for label, s in rep["setups"].items():
        assert s["seeds"] == [0] and len(s["runs"]) == 1  # one seed: the budget's train.seed
        run = s["runs"][0]
        assert run["seed"] == 0 and run["steps"] == 120 and len(run["history"]) == 120
        for h in run["history"]:
            shape = shape_order(len(files), h["step"] - 1, 1, 0)[0]
            assert h["latent_all"] == n_active[shape]
        assert run["time_per_step_s"] == pytest.approx(
            statistics.median(h["seconds"] for h in run["history"]))
        assert run["voxels_mean"]["latent_all"] == pytest.approx(
            np.mean([h["latent_all"] for h in run["history"]]))
        assert 0 <= run["process_peak_memory_mb"] < run["child_max_rss_mb"]
        assert run["child_max_rss_mb"] > run["rss_before_training_mb"] > 0
        assert run["torch_threads"] == 1
        assert np.isfinite(run["final_losses"]["total"])
        # per-mesh metrics, and their mean; with one seed each figure is {x, 0, x, x, 1}
        q = s["quality"]["train"]
        rows = [run["meshes"][n] for n in names]
        ok = [row for row in rows if "chamfer_l2" in row]
        assert q["meshes"] == 2 and q["reconstructed"] == one_seed(len(ok))
        for row in ok:
            assert Path(row["reconstruction"]).exists()
            assert row["chamfer_l2"] >= 0 and 0 <= row["fscore"] <= 1
            assert 0 <= row["normal_consistency"] <= 1 and row["n_points"] == 3000
            assert row["floor_chamfer_l2"] >= 0 and 0 <= row["floor_fscore"] <= 1
        for key in ("chamfer_l2", "fscore", "normal_consistency", "floor_fscore"):
            if ok:
                assert q[key] == one_seed(np.mean([row[key] for row in ok]))
            for n, row in zip(names, rows):
                assert s["meshes"][n][key] == (one_seed(row[key]) if row in ok else EMPTY)
        # cost of its own steps (113..120) and of the warm-up (1..112), apart
        own = [h for h in run["history"] if h["step"] > 112]
        for phase, hist in (("own_steps", own), ("warmup", run["history"][:112])):
            cost = s[phase]
            assert cost["steps"] == one_seed(len(hist))
            assert cost["seconds_per_step"] == one_seed(
                statistics.median(h["seconds"] for h in hist))
            assert cost["peak_memory_mb"] == one_seed(max(h["peak_memory_mb"] for h in hist))
            assert cost["latents_decoded_per_step"] == one_seed(
                np.mean([h["latent_kept"] for h in hist]))
            assert cost["cubes_meshed_per_step"] == one_seed(
                np.mean([h["output_kept"] for h in hist]))
    # the metric checks above ran on real reconstructions (seeded, so this is deterministic)
    assert sum(s["quality"]["train"]["reconstructed"]["mean"]
               for s in rep["setups"].values()) >= 1
    # triposf decodes every latent voxel and meshes part of the cubes; focusing carves latents
    tri, foc = (rep["setups"][k]["runs"][0] for k in ("triposf", "focusing"))
    # the render-free warm-up (steps 1..112) was trained once and both setups resumed from it
    for s in rep["setups"].values():
        assert s["runs"][0]["shared_warmup"]["steps"] == 112 and s["warmup_shared"]
    assert json.loads((out / "runs" / "shared-warmup" / "config.json").read_text())["name"] \
        == "triposf"
    assert not (out / "runs" / "triposf" / "config_changes.json").exists()  # the warm-up's own
    changes = json.loads((out / "runs" / "focusing" / "config_changes.json").read_text())
    assert changes[0]["step"] == 112 and "selectors.latent" in changes[0]["changes"]
    assert [h["loss_total"] for h in tri["history"][:112]] == \
        [h["loss_total"] for h in foc["history"][:112]]
    rendered = lambda hist: [h for h in hist if h["step"] > 112]  # noqa: E731 (after the warm-up)
    assert len(rendered(tri["history"])) == 8
    for h in rendered(tri["history"]):
        assert h["latent_kept"] == h["latent_all"] and h["output_kept"] <= h["output_all"]
    assert all(h["latent_kept"] < h["latent_all"] for h in rendered(foc["history"]))
    # the shared warm-up's cost, reported apart, is its own process's 112 steps
    warm_hist = json.loads((out / "runs" / "shared-warmup" / "history.json").read_text())
    warm = rep["shared_warmup"]
    assert warm["seeds"] == [0] and warm["steps"] == one_seed(112)
    assert warm["seconds_per_step"] == one_seed(
        statistics.median(h["seconds"] for h in warm_hist["steps"]))
    # at a glance: ratios of the own steps, not of means over every step
    c = rep["comparison"]["against_reference"]["focusing"]
    assert rep["comparison"]["reference"] == "triposf" and rep["comparison"]["seeds"] == 1
    own_s = [statistics.median(h["seconds"] for h in rendered(r["history"])) for r in (foc, tri)]
    assert c["time_per_step_ratio"] == pytest.approx(own_s[0] / own_s[1])
    # one seed: no difference is called beyond the spread, and the headline says so
    assert c["verdicts"] and not any(v["exceeds_spread"] for v in c["verdicts"])
    # the plots exist, are PNGs, and the markdown embeds them
    md = (out / "report.md").read_text()
    assert f"time per own step x{c['time_per_step_ratio']:.2f}" in md
    assert "shared warm-up (trained once per seed" in md and " is better than " not in md
    assert "with one seed no difference is called beyond the spread" in md
    # quality against compute: evaluations at steps 60 and 120 of each setup, in time order
    for s in rep["setups"].values():
        curve = s["runs"][0]["quality_curve"]
        assert [c["step"] for c in curve] == [60, 120]
        assert 0 < curve[0]["train_seconds"] < curve[1]["train_seconds"]
        assert set(s["first_reached_s"]) == {"0.3", "0.5", "0.6", "0.7", "0.8", "0.9"}
    assert "## Quality against compute" in md
    pngs = [rep["plots"]["losses"], rep["plots"]["voxels"], rep["plots"]["cost"],
            rep["plots"]["quality_time"], rep["plots"]["quality_resolution"],
            *rep["plots"]["renders"].values()]
    assert len(rep["plots"]["renders"]) == 2
    for rel in pngs:
        assert (out / rel).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({rel})" in md
    # --json printed the same report
    printed = json.loads(result.stdout[result.stdout.index("{"):])
    assert printed["setups"]["focusing"]["own_steps"] == rep["setups"]["focusing"]["own_steps"]


# ------------------------------------------------------------------------------ shared warm-up
def _tiny_budget(tmp_path, extra: str = ""):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_BUDGET + extra)
    return load_budget(str(path))


def test_shared_warmup_only_when_setups_train_it_alike(tmp_path):
    from focusing.eval.compare import shared_warmup_steps

    budget = _tiny_budget(tmp_path)
    assert shared_warmup_steps(parse_specs("triposf,focusing", budget.overrides), 120) == 112
    # a model change, a rendered warm-up or a warm-up as long as the run: nothing to share
    assert shared_warmup_steps(parse_specs("triposf,focusing:decoder.depth=2",
                                           budget.overrides), 120) == 0
    assert shared_warmup_steps(parse_specs("triposf,focusing", budget.overrides
                                           + ["loss.warmup_render=true"]), 120) == 0
    assert shared_warmup_steps(parse_specs("triposf,focusing", budget.overrides), 112) == 0
    # a selector ablation changes nothing the warm-up reads
    assert shared_warmup_steps(parse_specs("focusing,focusing:selector=frustum",
                                           budget.overrides), 120) == 112
    # nor how a rendered step encodes; a loss weight is read by the warm-up's own terms
    assert shared_warmup_steps(parse_specs("focusing,focusing:loss.encode_selected=false",
                                           budget.overrides), 120) == 112
    assert shared_warmup_steps(parse_specs("focusing,focusing:loss.occupancy=2.0",
                                           budget.overrides), 120) == 0


def test_render_free_warmup_is_the_same_for_both_setups(tmp_path):
    """What lets compare train the warm-up once: trained alone, each setup's render-free
    steps give bitwise-equal weights (deterministic mode)."""
    from safetensors.torch import load_file

    from focusing.core.config import resolve_setup
    from focusing.core.engine.checkpoint import weights_path
    from focusing.core.vae.train.trainer import Trainer

    data = mesh_folder(tmp_path / "data", "couplingdown", "elephant-with-holes")
    budget = _tiny_budget(tmp_path)
    weights = {}
    for name in ("triposf", "focusing"):
        setup = resolve_setup(name, budget.overrides + ["train.steps=120", "train.eval_every=0",
                                                        "train.deterministic=true"])
        trainer = Trainer(setup, data, tmp_path / name, progress=False)
        trainer.fit(6)
        trainer.close()
        weights[name] = load_file(weights_path(tmp_path / name, 6))
    assert weights["triposf"].keys() == weights["focusing"].keys()
    for key, value in weights["triposf"].items():
        assert torch.equal(value, weights["focusing"][key]), key


def test_budget_minutes_set_each_setups_time_limit(tmp_path):
    path = tmp_path / "timed.toml"
    path.write_text(TINY_BUDGET.replace("steps = 120\n", "steps = 120\nminutes = 2.5\n", 1))
    timed = load_budget(str(path))
    assert timed.minutes == 2.5
    assert timed.schedule == ["train.steps=120", "train.minutes=2.5"]
    assert load_budget("small").schedule == [f"train.steps={load_budget('small').steps}"]
    path.write_text(TINY_BUDGET.replace("steps = 120\n", "steps = 120\nminutes = -1\n", 1))
    with pytest.raises(CompareError, match="minutes >= 0"):
        load_budget(str(path))


def test_a_warmup_that_spends_the_minutes_is_refused_and_a_short_remainder_warned():
    assert minutes_after_warmup(1200.0, 0.0) is None  # no time budget: steps end the setups
    assert minutes_after_warmup(1200.0, 22.0) is None  # the medium budget as measured: 2 min left
    assert "0.5 min of its own" in minutes_after_warmup(1290.0, 22.0)
    with pytest.raises(CompareError, match="22.5 optimisation minutes, all of the budget's 22"):
        minutes_after_warmup(1350.0, 22.0)
