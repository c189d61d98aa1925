"""available() of the spconv and minkowski adapters tells the truth, with an install hint."""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from focusing.core.plugin_system import get_registry
from focusing.core.sparse.backends import minkowski as mink_mod
from focusing.core.sparse.backends import spconv as spconv_mod
from focusing.core.plugin_system.base import SparseBackend

REPO = Path(__file__).resolve().parents[2]
LIBS = {
    "spconv": (spconv_mod, "_spconv", "spconv", "pip install spconv"),
    "minkowski": (mink_mod, "_me", "MinkowskiEngine", "hatch run build-minkowski"),
}


def _imports_cleanly(module: str) -> bool:
    """Whether `module` imports in a fresh interpreter (with the 3.11 collections fix)."""
    code = (
        "import collections, collections.abc\n"
        "for n in ('Sequence', 'Mapping', 'MutableMapping', 'Iterable', 'Callable'):\n"
        "    if not hasattr(collections, n):\n"
        "        setattr(collections, n, getattr(collections.abc, n))\n"
        f"import {module}\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    return proc.returncode == 0


@pytest.mark.parametrize("name", sorted(LIBS))
def test_registered_under_its_name(name):
    registry = get_registry("sparse_backend")
    assert name in registry.names()
    cls = registry.entry(name).obj
    assert issubclass(cls, SparseBackend) and cls.name == name


@pytest.mark.parametrize("name", sorted(LIBS))
def test_available_agrees_with_a_real_import(name):
    module, _, lib, hint = LIBS[name]
    ok, reason = get_registry("sparse_backend").entry(name).availability()
    assert ok == _imports_cleanly(lib), f"available()={ok} ({reason}) but import {lib} disagrees"
    if ok:
        assert reason == ""
    else:
        assert hint in reason


@pytest.mark.parametrize("name", sorted(LIBS))
def test_missing_library_reads_unavailable_with_hint(name, monkeypatch):
    """With the library hidden from import, available() is False and says how to install it."""
    module, loader_name, lib, hint = LIBS[name]
    loader = getattr(module, loader_name)
    hidden = [m for m in list(sys.modules) if m == lib or m.startswith(lib + ".")]
    hidden += [lib, f"{lib}.pytorch", f"{lib}.pytorch.ops", "MinkowskiEngineBackend._C"]
    for mod in hidden:
        monkeypatch.setitem(sys.modules, mod, None)  # None in sys.modules makes import fail
    loader.cache_clear()
    try:
        cls = get_registry("sparse_backend").entry(name).obj
        ok, reason = cls.available()
        assert not ok
        assert hint in reason
    finally:
        monkeypatch.undo()
        loader.cache_clear()
    if importlib.util.find_spec(lib) is not None:
        importlib.import_module(lib)  # the real one is back for the tests that follow


@pytest.mark.skipif(
    importlib.util.find_spec("MinkowskiEngine") is None, reason="MinkowskiEngine not built here"
)
def test_build_script_is_idempotent_when_built():
    """`scripts/build_minkowski.sh` exits 0 at once when MinkowskiEngine already works."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "build_minkowski.sh")],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "nothing to do" in proc.stdout
