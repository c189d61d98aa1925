"""The plugin registry and `focusing plugins`: entry points, run-time plugins, name errors."""

from __future__ import annotations

import json
import types

import pytest
from typer.testing import CliRunner

from focusing.core import cli
from focusing.core.plugin_system import (
    DuplicatePluginError,
    Plugin,
    UnavailablePluginError,
    UnknownPluginError,
    get_registry,
    hookimpl,
    register_plugin,
    unregister_plugin,
)
from focusing.core.plugin_system.base import SparseBackend

PACKAGES = ["focusing-core", "focusing-carving", "focusing-render", "focusing-flow",
            "focusing-eval"]


def _plugin_module(name: str, *classes: type) -> types.ModuleType:
    module = types.ModuleType(name)

    @hookimpl
    def focusing_sparse_backends():
        return list(classes)

    module.focusing_sparse_backends = focusing_sparse_backends
    return module


class _OutsideBackend(SparseBackend):
    name = "outside-test-backend"


class _MissingLibBackend(SparseBackend):
    name = "missing-lib-backend"

    @classmethod
    def available(cls):
        return False, "pip install imaginary-lib"


@pytest.fixture
def outside_plugin():
    module = _plugin_module("outside_plugin", _OutsideBackend, _MissingLibBackend)
    register_plugin(module)
    yield module
    unregister_plugin(module)


def test_every_package_registers_through_its_entry_point():
    from importlib.metadata import entry_points

    dists = {ep.dist.name for ep in entry_points(group="focusing")}
    assert set(PACKAGES) <= dists


def test_outside_plugin_is_listed_with_its_availability(outside_plugin):
    result = CliRunner().invoke(cli.get_app(), ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    by_name = {(r["kind"], r["name"]): r for r in rows}
    row = by_name[("sparse_backend", "outside-test-backend")]
    assert set(row) == {"kind", "name", "distribution", "version", "available", "reason"}
    assert row["available"] is True and "outside_plugin" in row["distribution"]
    missing = by_name[("sparse_backend", "missing-lib-backend")]
    assert missing["available"] is False and "imaginary-lib" in missing["reason"]


def test_unknown_name_lists_registered_and_unavailable(outside_plugin):
    registry = get_registry("sparse_backend")
    with pytest.raises(UnknownPluginError) as err:
        registry.get("no-such-backend")
    msg = str(err.value)
    assert "no-such-backend" in msg and "outside-test-backend" in msg
    assert "missing-lib-backend (pip install imaginary-lib)" in msg


def test_unavailable_name_raises_with_reason(outside_plugin):
    with pytest.raises(UnavailablePluginError, match="imaginary-lib"):
        get_registry("sparse_backend").get("missing-lib-backend")
    assert get_registry("sparse_backend").get("outside-test-backend") is _OutsideBackend


def test_duplicate_name_names_both_classes_and_distributions(outside_plugin):
    class Clash(SparseBackend):
        name = "outside-test-backend"

    second = _plugin_module("clashing_plugin", Clash)
    register_plugin(second)
    try:
        with pytest.raises(DuplicatePluginError) as err:
            get_registry("sparse_backend")
        msg = str(err.value)
        assert "_OutsideBackend" in msg and "Clash" in msg
        assert "outside_plugin" in msg and "clashing_plugin" in msg
    finally:
        unregister_plugin(second)


def test_plugins_table_prints_every_kind_column():
    result = CliRunner().invoke(cli.get_app(), ["plugins"])
    assert result.exit_code == 0
    assert "distribution" in result.output and "available" in result.output


def test_plain_plugin_base_is_available():
    assert Plugin.available() == (True, "")


def test_backend_instances_live_on_the_registry_and_reset_forgets_them():
    """get_backend caches on the registry: after a reset, a re-registered name is fresh."""
    from focusing.core.sparse.nn import get_backend

    class First(SparseBackend):
        name = "reset-probe-backend"

    class Second(SparseBackend):
        name = "reset-probe-backend"

    first = _plugin_module("reset_probe_first", First)
    register_plugin(first)
    try:
        got = get_backend("reset-probe-backend")
        assert type(got) is First and get_backend("reset-probe-backend") is got  # shared
    finally:
        unregister_plugin(first)
    second = _plugin_module("reset_probe_second", Second)
    register_plugin(second)
    try:
        assert type(get_backend("reset-probe-backend")) is Second
    finally:
        unregister_plugin(second)
    with pytest.raises(UnknownPluginError):
        get_backend("reset-probe-backend")


def test_every_kind_has_one_base_class_and_hook_in_the_table():
    """The table in plugin_system/base.py names each registry kind once, with its hook and base."""
    from focusing.core.plugin_system import KINDS, PLUGIN_KINDS
    from focusing.core.plugin_system.hookspecs import FocusingHookSpecs

    assert list(KINDS) == [k.kind for k in PLUGIN_KINDS]
    for k in PLUGIN_KINDS:
        assert hasattr(FocusingHookSpecs, k.hook)
        if k.base is None:
            continue
        assert issubclass(k.base, Plugin)
        for entry in get_registry(k.kind).entries():
            assert issubclass(entry.obj, k.base), (k.kind, entry.name)
