"""The flow's setup is typed and checked like the shape VAE's (focusing.flow.config.FlowSetup):
every key's type, range and choices, unknown keys and keys across tables fail as one precise
line before anything is written (the run folder is not made); a stored run config is read back
into the same typed setup, and a bad one names its file."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from focusing.core import cli
from focusing.core.config import ConfigError, apply_steps, dumps, replace_setting, resolve_setup
from focusing.flow.config import (
    FlowSetup, StructureVAEConfig, flow_setting_rules, flow_setup_from_run, load_flow_defaults,
    resolve_flow_setup,
)

TINY = ["views.count=2", "views.held_out=1", "views.image_size=32",
        "encoder.params.width=8", "encoder.params.image_size=32", "encoder.params.levels=2",
        "structure_vae.channels=[8, 8]", "structure_flow.width=16", "structure_flow.depth=1",
        "structure_flow.heads=2", "latent_flow.width=16", "latent_flow.io_channels=8",
        "latent_flow.depth=1", "latent_flow.heads=2", "train.steps=3"]


@pytest.fixture
def vae_folder(tmp_path) -> Path:
    """A shape VAE folder holding only its config.json (what train-flow reads before it writes)."""
    vae = tmp_path / "vae"
    vae.mkdir()
    (vae / "config.json").write_text(dumps(resolve_setup("focusing")))
    return vae


def _train_flow(vae: Path, out: Path, stage: str, *args: str):
    return CliRunner().invoke(cli.get_app(), [
        "train-flow", "--stage", stage, "--vae", str(vae), "--data", str(vae), "--out", str(out),
        "--quiet", *args])


@pytest.mark.parametrize("stage, args, message", [
    ("latent", ["--set", "views.cout=3"],
     "unknown flow setting 'views.cout'; valid keys here: count, fov_y_deg, held_out, "
     "image_size, radius, render_size, seed"),
    ("latent", ["--set", "train.batch_size=0"], "train.batch_size = 0: expected an integer >= 1"),
    ("latent", ["--set", "flow.cond_drop=1.5"],
     "flow.cond_drop = 1.5: expected a finite number >= 0 and <= 1"),
    ("latent", ["--set", "structure_vae.loss='l2'"],
     "structure_vae.loss = 'l2': expected one of 'dice', 'bce'"),
    ("latent", ["--set", "sampler.steps=true"], "sampler.steps = True: expected an integer >= 1"),
    ("latent", ["--steps", "-1"], "train.steps = -1: expected an integer >= 0"),
    ("latent", ["--set", "latent_flow.width=30"],
     "latent_flow.width = 30: expected a multiple of latent_flow.heads (4)"),
    ("latent", ["--set", "encoder.params.widht=8"],
     "unknown flow setting 'encoder.params.widht' for the image encoder 'cnn'; valid keys here: "
     "image_size, levels, width"),
    ("structure", ["--set", "structure_vae.channels=[4, 4, 4, 4, 4, 4, 4, 4]"],
     "structure_vae.channels = [4, 4, 4, 4, 4, 4, 4, 4]: its factor 128 does not divide the "
     "shape VAE's model.latent_resolution"),
])
def test_a_bad_flow_setting_is_one_precise_error_before_anything_is_written(
        vae_folder, tmp_path, stage, args, message):
    out = tmp_path / "flow-run"
    res = _train_flow(vae_folder, out, stage, *args)
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], res.output
    assert not out.exists()


def _flat_keys(table: dict, prefix: str = "") -> set[str]:
    out = set()
    for key, value in table.items():
        where = f"{prefix}{key}"
        if isinstance(value, dict) and where != "encoder.params":
            out |= _flat_keys(value, where + ".")
        else:
            out.add(where)
    return out


def _bad_values(rule: dict) -> list[str]:
    """A value of the wrong type, and one out of range where the rule has a range."""
    kind = rule["kind"]
    out = [{"int": "1.5", "float": "'abc'", "bool": "1", "str": "3", "ints": "'abc'",
            "floats": "'abc'", "kwargs": "3"}[kind]]
    if kind == "int" and rule["lo"] is not None:
        out.append(str(rule["lo"] - 1))
    if kind == "float" and rule["lo"] is not None:
        out.append(str(float(rule["lo"]) if rule["lo_open"] else float(rule["lo"]) - 1.0))
    if kind == "float" and rule["hi"] is not None:
        out.append(str(float(rule["hi"]) if rule["hi_open"] else float(rule["hi"]) + 1.0))
    if kind == "str" and rule["choices"]:
        out.append("'no-such-value'")
    if kind in ("ints", "floats"):
        out.append("[-1, -1]")
    return out


RULES = flow_setting_rules()
CASES = [(key, value) for key, rule in RULES.items() for value in _bad_values(rule)]


def test_the_typed_setup_mirrors_every_key_of_the_flow_defaults():
    assert set(RULES) == _flat_keys(load_flow_defaults())


@pytest.mark.parametrize("key,value", CASES, ids=[f"{k}={v}" for k, v in CASES])
def test_every_flow_key_refuses_a_wrong_type_or_range_naming_the_key(key, value):
    with pytest.raises(ConfigError) as err:
        resolve_flow_setup([f"{key}={value}"])
    msg = str(err.value)
    if key == "encoder.params":  # an open table: the merge says it is one
        assert msg == f"flow setting 'encoder.params' is a table, got {value}"
    else:
        assert msg.startswith(f"{key} = ") and ": expected " in msg, msg


def test_every_key_of_the_defaults_is_typed_and_unknown_keys_are_refused():
    setup = resolve_flow_setup()
    assert isinstance(setup.structure_vae, StructureVAEConfig)
    assert setup.structure_vae.channels == (16, 32, 64) and setup.sampler.cfg_interval == (0.0, 1.0)
    assert setup.to_dict() == load_flow_defaults()  # nothing added, nothing lost
    with pytest.raises(ConfigError, match="unknown flow setting 'sampler.cfg'"):
        resolve_flow_setup(["sampler.cfg=1"])
    stored = {**load_flow_defaults(), "extra": 1}
    with pytest.raises(ConfigError, match=r"RUN/config.json: unknown flow setting 'extra'"):
        flow_setup_from_run(stored, "RUN/config.json")


def test_steps_and_other_shorthands_set_typed_fields():
    setup = resolve_flow_setup(["train.steps=5"])
    assert apply_steps(setup, ["train.steps=5"], 5).train.steps == 5
    assert apply_steps(setup, [], 9).train == dataclasses.replace(setup.train, steps=9)
    with pytest.raises(ConfigError, match="--steps 9 and --set train.steps=5 disagree"):
        apply_steps(setup, ["train.steps=5"], 9)
    assert replace_setting(setup, "stage", "latent").stage == "latent"
    with pytest.raises(ConfigError, match=r"train.steps = '9': expected an integer >= 0"):
        replace_setting(setup, "train.steps", "9")
    with pytest.raises(ConfigError, match="multiple of structure_flow.heads"):
        replace_setting(setup, "structure_flow.heads", 5)  # the setup's own checks run again


def test_the_flow_train_table_checks_its_keys_as_core_does():
    from focusing.core.config import EngineConfig
    from focusing.flow.config import FlowTrainConfig

    core = {f.name: f.metadata["rule"] for f in dataclasses.fields(EngineConfig)}
    for f in dataclasses.fields(FlowTrainConfig):
        if f.name in core:
            assert f.metadata["rule"] == core[f.name], f.name
    train = resolve_flow_setup(["train.steps=4", "train.lr=0.01"]).train
    engine = train.engine_config(steps=9)
    assert isinstance(engine, EngineConfig) and engine.steps == 9 and engine.lr == 0.01


def _saved_latent_run(run: Path) -> tuple[FlowSetup, torch.nn.Module]:
    """A latent-stage run folder as train-flow leaves it: config.json and one checkpoint."""
    from focusing.core.engine.checkpoint import save_checkpoint
    from focusing.flow.stages import build_stage

    vae = resolve_setup("focusing", ["model.latent_channels=4"])
    setup = resolve_flow_setup(TINY)
    setup = dataclasses.replace(replace_setting(setup, "stage", "latent"), vae_config=vae,
                                vae_run="/somewhere/vae", vae_step=3, vae_sha256="ab" * 32)
    torch.manual_seed(0)
    module = build_stage(setup, vae)
    run.mkdir()
    (run / "config.json").write_text(dumps(setup.to_dict()))
    save_checkpoint(run, 3, module)
    return setup, module


def test_the_typed_setup_round_trips_through_a_saved_run(tmp_path):
    from focusing.flow.stages import load_stage
    from focusing.flow.train import resume_config

    run = tmp_path / "run"
    setup, module = _saved_latent_run(run)
    stored = json.loads((run / "config.json").read_text())
    assert set(stored) == set(load_flow_defaults()) | {"vae_config"}
    assert stored["structure_vae"]["channels"] == [8, 8]  # plain JSON: lists, not tuples
    assert flow_setup_from_run(stored) == setup
    assert resume_config(run) == setup  # what --resume reads back
    assert resume_config(run, ["train.steps=7"]) == replace_setting(setup, "train.steps", 7)
    loaded, again = load_stage(run, expect="latent")  # what generate reads back
    assert again == setup and again.vae_config.model.latent_channels == 4
    for key, value in module.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0, msg=key)


def test_a_bad_stored_run_config_names_its_file_and_key(tmp_path):
    from focusing.flow.train import resume_config

    run = tmp_path / "run"
    _saved_latent_run(run)
    path = run / "config.json"
    stored = json.loads(path.read_text())
    stored["train"]["batch_size"] = -2
    path.write_text(json.dumps(stored))
    with pytest.raises(ConfigError) as err:
        resume_config(run)
    assert str(err.value) == f"{path}: train.batch_size = -2: expected an integer >= 1"
    stored["train"]["batch_size"] = 2
    stored["latent_flow"]["widht"] = 16
    path.write_text(json.dumps(stored))
    res = CliRunner().invoke(cli.get_app(), ["train-flow", "--stage", "latent", "--data",
                                             str(tmp_path), "--out", str(run), "--resume"])
    assert res.exit_code == 2
    assert f"error: {path}: unknown flow setting 'latent_flow.widht'" in res.output, res.output
    assert json.loads(path.read_text()) == stored
    assert not (run / "tensorboard").exists()


def test_an_older_run_config_reads_with_todays_defaults_for_keys_added_since(tmp_path):
    """Runs written before the VAE identity (or train.ema) was recorded still load; their VAE
    identity stays unrecorded (not checked)."""
    from focusing.flow.stages import check_vae_identity

    stored = load_flow_defaults()
    for key in ("vae_step", "vae_sha256"):
        del stored[key]
    del stored["train"]["ema"]
    stored.update(stage="latent", vae_config=resolve_setup("focusing").to_dict())
    setup = flow_setup_from_run(stored)
    assert (setup.vae_step, setup.vae_sha256, setup.train.ema) == (-1, "", 0.0)
    check_vae_identity(tmp_path, setup, {"vae_step": 5, "vae_sha256": "cd" * 32})


def test_an_older_runs_vae_config_with_moved_keys_resumes_without_changes(tmp_path):
    """A flow run written before train.eval_meshes and train.workers moved (to evaluation.* and
    resources.*) holds them in its vae_config; resuming compares it with today's keys moved,
    so it finds no change and needs no --allow-changes."""
    from focusing.core.engine.runfolder import config_changes
    from focusing.flow.config import normalise_flow_stored

    run = tmp_path / "run"
    setup, _ = _saved_latent_run(run)
    stored = json.loads((run / "config.json").read_text())
    old_vae = stored["vae_config"]
    old_vae["train"]["eval_meshes"] = old_vae["evaluation"].pop("meshes")
    old_vae["train"]["workers"] = old_vae["resources"].pop("workers")
    assert config_changes(stored, setup.to_dict())  # as stored, the keys differ
    assert config_changes(normalise_flow_stored(stored), setup.to_dict()) == {}
    assert flow_setup_from_run(stored) == setup
