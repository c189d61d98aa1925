"""The dependency rule of docs/architecture.md, checked on every import under packages/.

Rule: `focusing.core` imports no sibling package; each sibling (carving, render, eval, flow)
imports only core and itself. Siblings meet through the plugin registry, by name. Every import
counts: module level, inside functions, under `if TYPE_CHECKING:` and inside try/except.

Second rule: the plugin base module sits at the bottom of core. No module it imports (following
module files, transitively) imports `focusing.core.plugin_system.base` back.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from import_graph import ROOT, SIBLINGS, imports_of, module_files, owner  # noqa: E402


def violations() -> list[str]:
    """Every import that breaks the rule, as 'file:line: importer -> imported (why)'."""
    bad = []
    for module, path in module_files().items():
        src = owner(module)
        for line, name in imports_of(path, module):
            dst = owner(name)
            if src is None or dst is None or dst == src or dst == "core":
                continue
            rel = path.relative_to(ROOT)
            why = ("core imports no sibling package" if src == "core"
                   else "a sibling imports only core and itself")
            bad.append(f"{rel}:{line}: {module} imports {name} ({why})")
    return bad


def test_no_import_breaks_the_dependency_rule():
    bad = violations()
    assert not bad, "the dependency rule of docs/architecture.md is broken:\n" + "\n".join(bad)


def test_the_rule_checker_sees_lazy_and_guarded_imports(tmp_path):
    """The checker must find imports inside functions and try/except (the ones that hid)."""
    src = tmp_path / "x.py"
    src.write_text(
        "def f():\n"
        "    try:\n"
        "        from focusing.eval.metrics import evaluate\n"
        "    except ImportError:\n"
        "        pass\n"
        "from . import sibling\n"
    )
    names = [n for _, n in imports_of(src, "focusing.core.train.x")]
    assert "focusing.eval.metrics" in names
    assert "focusing.core.train.sibling" in names


def test_every_sibling_module_is_seen():
    """The walk covers every distribution (a renamed src layout would silently check nothing)."""
    owners = {owner(m) for m in module_files()}
    assert owners == {"core", *SIBLINGS}


def _closure(start: str, files: dict[str, Path]) -> dict[str, str]:
    """Modules reachable from `start` through module-file imports: module -> who imported it."""
    seen = {start: ""}
    todo = [start]
    while todo:
        module = todo.pop()
        for _, name in imports_of(files[module], module):
            # `from a.b import c` also lists a.b.c; keep whichever is a module file
            if name in files and name not in seen:
                seen[name] = module
                todo.append(name)
    return seen


@pytest.mark.parametrize("base", [
    "focusing.core.plugin_system.base", "focusing.core.plugin_system.types"])
def test_the_plugin_base_module_imports_nothing_that_imports_it(base):
    files = module_files()
    reach = _closure(base, files)
    reach.pop(base)
    back = []
    for module in reach:
        for _, name in imports_of(files[module], module):
            if name in ("focusing.core.plugin_system", "focusing.core.plugin_system.base"):
                chain = [module]
                while reach.get(chain[-1]):
                    chain.append(reach[chain[-1]])
                back.append(" <- ".join(chain))
    assert not back, f"{base} is in an import circle: " + "; ".join(back)
    assert set(reach) <= {
        "focusing.core.plugin_system.types", "focusing.core.geometry.camera",
        "focusing.core.sparse", "focusing.core.sparse.tensor", "focusing.core.sparse.hashing",
        "focusing.core.sparse.kernels"}, sorted(reach)
