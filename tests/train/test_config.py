"""Setups as data: presets, overrides, and clear errors."""

from __future__ import annotations

import pytest

from focusing.core.plugin_system import UnknownPluginError, get_registry
from focusing.core.config import ConfigError, load_setup, parse_override

from _training_fixtures import _isolated_cache  # noqa: F401 (fixture)


def test_builtin_setups_are_registered_and_differ_in_selectors():
    assert {"triposf", "focusing"} <= set(get_registry("setup").names())
    tri, foc = load_setup("triposf"), load_setup("focusing")
    assert (tri["selectors"]["output"] == ["frustum", "far-plane"]
            and tri["selectors"]["latent"] == [])
    assert (foc["selectors"]["latent"] == ["depth-carving", "zoom"]
            and foc["selectors"]["output"] == [])
    # same model and loss code: the model tables are identical
    for key in ("model", "encoder", "decoder", "pointnet", "loss"):
        assert tri[key] == foc[key]


def test_overrides_reach_any_key():
    cfg = load_setup("focusing", ["decoder.depth=4", 'selectors.latent=["frustum"]',
                                  "upsampler.name=subdivide", "backend.sparse=torch"])
    assert cfg["decoder"]["depth"] == 4
    assert cfg["selectors"]["latent"] == ["frustum"]
    assert cfg["upsampler"]["name"] == "subdivide"


def test_parse_override_reads_toml_values_and_strings():
    assert parse_override("a.b=3") == (["a", "b"], 3)
    assert parse_override("a=[1, 2]") == (["a"], [1, 2])
    assert parse_override("a=torch") == (["a"], "torch")


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError, match="decoder.dept.*valid keys here: depth, heads"):
        load_setup("focusing", ["decoder.dept=3"])


def test_unknown_plugin_names_are_errors_listing_what_exists():
    with pytest.raises(UnknownPluginError, match="depth-carving"):
        load_setup("focusing", ['selectors.latent=["no-such-selector"]'])
    with pytest.raises(UnknownPluginError, match="torch"):
        load_setup("focusing", ["backend.sparse=nope"])


def test_setup_file_and_missing_file(tmp_path):
    f = tmp_path / "mine.toml"
    f.write_text('[decoder]\ndepth = 3\n[selectors]\nlatent = ["depth-carving"]\n')
    cfg = load_setup(str(f))
    assert cfg["decoder"]["depth"] == 3 and cfg["name"] == "mine"
    with pytest.raises(ConfigError, match="does not exist"):
        load_setup(str(tmp_path / "missing.toml"))


@pytest.mark.parametrize("table,leaf,today,before", [("pointnet", "reach", 1, 0),
                                                    ("loss", "encode_selected", True, False)])
def test_a_run_stored_before_a_key_existed_loads_with_its_earlier_behaviour(table, leaf, today,
                                                                            before):
    from focusing.core.config import load_setup, normalise_stored

    stored = load_setup("focusing")
    assert stored[table][leaf] == today  # today's default
    del stored[table][leaf]
    assert normalise_stored(stored)[table][leaf] == before
    stored[table][leaf] = today
    assert normalise_stored(stored)[table][leaf] == today


@pytest.mark.parametrize("old,new", [("train.eval_meshes", "evaluation.meshes"),
                                     ("train.calibration_meshes", "evaluation.calibration_meshes"),
                                     ("train.memory_fraction", "resources.memory_fraction")])
def test_a_key_that_moved_out_of_train_is_unknown_there_and_names_its_new_place(old, new):
    with pytest.raises(ConfigError, match=rf"unknown setting '{old}' \(moved to {new}\); "
                                          "valid keys here: amp, batch_size"):
        load_setup("focusing", [f"{old}=1"])
    table, _, leaf = new.partition(".")
    assert load_setup("focusing", [f"{new}=1"])[table][leaf] == 1


def test_a_run_stored_before_the_evaluation_table_loads_with_its_keys_moved():
    import dataclasses

    from focusing.core.config import EngineConfig, normalise_stored, setup_from_run

    stored = load_setup("focusing")
    old = {"eval_meshes": 3, "eval_tau": 0.01, "calibration_meshes": 0, "image_every": 5,
           "mesh_every": 7, "workers": 2, "memory_fraction": 0.5}
    del stored["evaluation"], stored["resources"]
    stored["train"].update(old)
    setup = setup_from_run(stored)
    assert (setup.evaluation.meshes, setup.evaluation.tau, setup.evaluation.calibration_meshes,
            setup.evaluation.image_every, setup.evaluation.mesh_every) == (3, 0.01, 0, 5, 7)
    assert (setup.resources.workers, setup.resources.memory_fraction) == (2, 0.5)
    engine_keys = {f.name for f in dataclasses.fields(EngineConfig)}
    assert set(normalise_stored(stored)["train"]) == engine_keys
