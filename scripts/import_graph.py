"""The import graph of packages/: every module file and every import it makes, wherever it is.

Used by tests/test_import_rule.py (the dependency rule of docs/architecture.md) and by
scripts/architecture_map.py (which writes that document's package map and import table), so
the rule that is checked and the table that is shown come from one walk.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ROOT / "packages"
SIBLINGS = ("carving", "render", "eval", "flow")
DISTRIBUTIONS = ("core",) + SIBLINGS


def module_files(packages: Path = PACKAGES) -> dict[str, Path]:
    """Dotted module name -> source file, for every module under packages/*/src."""
    out = {}
    for src in sorted(packages.glob("*/src")):
        for path in sorted(src.glob("focusing/**/*.py")):
            parts = path.relative_to(src).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def imports_of(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, imported dotted name) for every import statement in the file: module level, in
    functions, under `if TYPE_CHECKING:` and in try/except alike. `from a import b` yields both
    `a` and `a.b` (b may be a module)."""
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
            found += [(node.lineno, f"{name}.{alias.name}") for alias in node.names]
    return found


def owner(module: str) -> str | None:
    """The distribution a focusing module belongs to: core, carving, ... (None outside)."""
    parts = module.split(".")
    if len(parts) < 2 or parts[0] != "focusing":
        return None
    return parts[1] if parts[1] in DISTRIBUTIONS else None
