"""Every training command takes the same common flags, and `--steps` sets train.steps the same
way everywhere (focusing.core.config.apply_steps, on the typed setup): a --set train.steps that
disagrees is an error said before anything is written."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from focusing.core import cli
from focusing.core.config import ConfigError, apply_steps, resolve_setup, with_steps

COMMON = ("--steps", "--set", "--resume", "--allow-changes", "--debug")
TRAINING_COMMANDS = ("train", "train-flow")


@pytest.mark.parametrize("command", TRAINING_COMMANDS)
def test_every_training_command_takes_the_common_flags(command):
    res = CliRunner().invoke(cli.get_app(), [command, "--help"], terminal_width=200)
    assert res.exit_code == 0, res.output
    for flag in COMMON:
        assert flag in res.output, f"{command} lacks {flag}"


def test_with_steps_agrees_or_refuses():
    assert with_steps(["a.b=1"], None, 100) == ["a.b=1"]
    assert with_steps(["a.b=1"], 7, 100) == ["a.b=1", "train.steps=7"]
    assert with_steps(["train.steps=7"], 7, 7) == ["train.steps=7", "train.steps=7"]
    with pytest.raises(ConfigError, match="disagree"):
        with_steps(["train.steps=3"], 7, 3)
    with pytest.raises(ConfigError, match="disagree"):
        with_steps(["train={steps=3}"], 7, 3)


def test_apply_steps_sets_the_typed_field_or_refuses():
    setup = resolve_setup("focusing", ["train.steps=3"])
    assert apply_steps(setup, ["train.steps=3"], None) is setup
    assert apply_steps(setup, ["train.steps=3"], 3) == setup
    stepped = apply_steps(setup, [], 7)
    assert stepped.train.steps == 7 and stepped.loss == setup.loss and stepped.model == setup.model
    with pytest.raises(ConfigError, match="--steps 7 and --set train.steps=3 disagree"):
        apply_steps(setup, ["train={steps=3}"], 7)
    with pytest.raises(ConfigError, match="train.steps = -2: expected an integer >= 0"):
        apply_steps(setup, [], -2)


def test_train_steps_and_set_must_agree_before_anything_is_written(tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(cli.get_app(), [
        "train", "--setup", "focusing", "--data", str(tmp_path), "--out", str(out),
        "--steps", "2", "--set", "train.steps=3"])
    assert res.exit_code == 2, res.output
    assert "--steps 2 and --set train.steps=3 disagree" in res.output
    assert not out.exists()


def test_train_flow_steps_and_set_must_agree_before_anything_is_written(tmp_path):
    """The VAE folder only needs its config.json for this check (it is read before training)."""
    from focusing.core.config import load_setup, dumps

    vae = tmp_path / "vae"
    vae.mkdir()
    (vae / "config.json").write_text(dumps(load_setup("focusing")))
    out = tmp_path / "flow-run"
    res = CliRunner().invoke(cli.get_app(), [
        "train-flow", "--stage", "latent", "--vae", str(vae), "--data", str(tmp_path), "--out",
        str(out), "--steps", "2", "--set", "train.steps=3"])
    assert res.exit_code == 2, res.output
    assert "--steps 2 and --set train.steps=3 disagree" in res.output
    assert not out.exists()
