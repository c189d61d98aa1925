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


def mesh_folder(folder: Path, *names: str) -> Path:
    """`folder`, made, holding a copy of each named example mesh: a data set for a command."""
    import shutil

    folder.mkdir(parents=True)
    for name in names:
        shutil.copy(mesh_file(name), folder)
    return folder


def first_views(names: list[str], image_size: int):
    """View 0 of each named example mesh as the flow's conditioning image: [len(names),3,S,S]."""
    import torch

    from focusing.core.geometry.meshio import load_mesh
    from focusing.flow.views import render_views

    settings = {"count": 1, "held_out": 0, "render_size": 64, "image_size": image_size,
                "fov_y_deg": 40.0, "radius": 2.0, "seed": 0}
    views = []
    for name in names:
        mesh = load_mesh(mesh_file(name))
        views.append(render_views(torch.as_tensor(mesh.vertices).float(),
                                  torch.as_tensor(mesh.faces), settings, [0])[0])
    return torch.stack(views)
