"""The real meshes shipped in examples/meshes (see its CREDITS.md), for every test folder.

Import as `from meshdata import mesh_file` (not from conftest: each test folder may have its
own conftest.py, and they would shadow one another)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MESHES = REPO / "examples" / "meshes"
CLOSED_MESHES = ["fandisk", "armadillo", "camel", "anchor_dense", "couplingdown", "bunny00"]
OPEN_MESHES = ["blade", "elephant-with-holes", "mannequin-devil"]


def mesh_file(name: str) -> Path:
    """Path of an example mesh by stem (e.g. 'fandisk')."""
    path = MESHES / f"{name}.off"
    if not path.exists():
        raise FileNotFoundError(f"example mesh {path} is missing")
    return path
