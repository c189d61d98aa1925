"""Every key of defaults.toml is checked once, at load, before `focusing train` writes anything:
a wrong type or a value out of range is one line naming the key, the value and what it accepts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from focusing.core import cli
from focusing.core.config import Setup, load_defaults, resolve_setup, setting_rules
from meshdata import mesh_file

RULES = setting_rules()


def _flat_keys(table: dict, prefix: str = "") -> set[str]:
    out = set()
    for key, value in table.items():
        where = f"{prefix}{key}"
        if isinstance(value, dict) and where not in ("selectors.params", "upsampler.params"):
            out |= _flat_keys(value, where + ".")
        else:
            out.add(where)
    return out


def test_typed_setup_mirrors_every_key_of_defaults_toml():
    assert set(RULES) == _flat_keys(load_defaults())
    setup = resolve_setup("focusing")
    assert (isinstance(setup, Setup) and setup.train.steps == 100
            and setup.model.latent_resolution == 32)
    # plain lists for JSON
    assert setup.to_dict()["selectors"]["latent"] == ["depth-carving", "zoom"]


def _wrong_type(rule: dict) -> str:
    return {"int": "1.5", "float": "abc", "bool": "1", "str": "3", "names": "3", "ints": "abc",
            "floats": "abc", "table": "3", "kwargs": "3"}[rule["kind"]]


def _out_of_range(rule: dict) -> str | None:
    kind = rule["kind"]
    if kind == "int":
        if rule["pow2"]:
            return "12"
        return str(rule["lo"] - 1) if rule["lo"] is not None else str(rule["hi"] + 1)
    if kind == "float":
        if rule["lo"] is not None:
            return str(float(rule["lo"]) if rule["lo_open"] else float(rule["lo"]) - 1.0)
        return "inf"
    if kind == "str" and (rule["choices"] or rule["plugin"]):
        return "no-such-value"
    if kind == "names":
        return '["no-such-value"]'
    if kind == "ints":
        return "[0, 0]"
    if kind == "floats":
        return "[0.0, 0.0]"
    return None  # free strings, booleans and parameter tables have no range


CASES = [(key, _wrong_type(rule)) for key, rule in RULES.items()]
CASES += [(key, v) for key, rule in RULES.items() if (v := _out_of_range(rule)) is not None]
# the cases of issue 11 item 3, by name
CASES += [("train.steps", "abc"), ("model.latent_resolution", "16.0"), ("train.steps", "1e400"),
          ("train.batch_size", "0"), ("cameras.target", "nope"), ("train.amp", "fp16"),
          ("cameras.fov_y_deg", "0")]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("data")
    shutil.copy(mesh_file("couplingdown"), data)
    return data


@pytest.mark.parametrize("key,value", CASES, ids=[f"{k}={v}" for k, v in CASES])
def test_bad_value_is_one_clear_line_and_writes_nothing(key, value, data_dir, tmp_path,
                                                        monkeypatch):
    monkeypatch.setenv("FOCUSING_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    result = CliRunner().invoke(cli.get_app(), ["train", "--setup", "focusing",
                                                "--data", str(data_dir), "--out", str(out),
                                                "--quiet", "--set", f"{key}={value}"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert key in lines[0], lines[0]
    assert "Traceback" not in result.output
    assert not out.exists() and not (tmp_path / "cache").exists()
