"""The dependency rule of docs/architecture.md, checked on every import under packages/.

Rule: `focusing.core` imports no sibling package; each sibling (carving, render, eval, flow)
imports only core and itself. Siblings meet through the plugin registry, by name. Every import
counts: module level, inside functions, under `if TYPE_CHECKING:` and inside try/except.

Second rule: the plugin base module sits at the bottom of core. No module it imports (following
module files, transitively) imports `focusing.core.plugins.base` back.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ROOT / "packages"
SIBLINGS = ("carving", "render", "eval", "flow")


def module_files() -> dict[str, Path]:
    """Dotted module name -> source file, for every module under packages/*/src."""
    out = {}
    for src in sorted(PACKAGES.glob("*/src")):
        for path in sorted(src.glob("focusing/**/*.py")):
            parts = path.relative_to(src).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def imports_of(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, imported dotted name) for every import statement in the file, wherever it is."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((node.lineno, name))
            # `from focusing.core import metrics` imports the module focusing.core.metrics
            found += [(node.lineno, f"{name}.{alias.name}") for alias in node.names]
    return found


def owner(module: str) -> str | None:
    """The distribution a focusing module belongs to: core, carving, ... (None outside)."""
    parts = module.split(".")
    if len(parts) < 2 or parts[0] != "focusing":
        return None
    return parts[1] if parts[1] in ("core",) + SIBLINGS else None


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


@pytest.mark.parametrize("base", ["focusing.core.plugins.base", "focusing.core.plugins.types"])
def test_the_plugin_base_module_imports_nothing_that_imports_it(base):
    files = module_files()
    reach = _closure(base, files)
    reach.pop(base)
    back = []
    for module in reach:
        for _, name in imports_of(files[module], module):
            if name in ("focusing.core.plugins", "focusing.core.plugins.base"):
                chain = [module]
                while reach.get(chain[-1]):
                    chain.append(reach[chain[-1]])
                back.append(" <- ".join(chain))
    assert not back, f"{base} is in an import circle: " + "; ".join(back)
    assert set(reach) <= {
        "focusing.core.plugins.types", "focusing.core.geometry.camera",
        "focusing.core.sparse", "focusing.core.sparse.tensor", "focusing.core.sparse.hashing",
        "focusing.core.sparse.kernels"}, sorted(reach)
