"""The `focusing carve-stats` command (registered through the `focusing_commands` hook)."""

import json
from pathlib import Path
from typing import List, Optional

import typer


def carve_stats(
    meshes: List[Path] = typer.Argument(..., help="Mesh files (OBJ/PLY/OFF/STL/GLB)."),
    res: int = typer.Option(64, "--res", help="Voxel grid resolution R."),
    views: int = typer.Option(8, "--views", help="Random orbit views per mesh."),
    image_size: int = typer.Option(256, "--image-size", help="Square image size S (pixels)."),
    as_json: bool = typer.Option(
        False, "--json",
        help="Print strict JSON (summary and records; null where a view has no bound).",
    ),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG of the distributions."),
    alpha: float = typer.Option(0.5, "--alpha", help="far-plane visibility ratio."),
    active: str = typer.Option("dilated", "--active", help="Active set: 'dilated' or 'surface'."),
    seed: int = typer.Option(0, "--seed", help="Seed of the views and of zoom."),
) -> None:
    """Per voxel selector: kept voxels, kept / lower bound, recall of the bound, time per view."""
    from focusing.core.cli_support import fail
    from focusing.core.geometry.validation import MeshError

    from focusing.carving.stats import format_table, run_carve_stats, write_plot

    for m in meshes:
        if not Path(m).is_file():
            raise typer.BadParameter(f"mesh file {m} does not exist", param_hint="MESH")
    try:
        stats = run_carve_stats(
            list(meshes), res, views, image_size, params={"far-plane": {"alpha": alpha}},
            active=active, seed=seed, progress=not as_json,
        )
    except (MeshError, ValueError) as exc:
        fail(exc)
    if plot is not None:
        write_plot(stats, plot)
    if as_json:
        typer.echo(json.dumps(stats.to_json(), indent=2, allow_nan=False))
    else:
        typer.echo(
            f"{len(meshes)} mesh(es) at {res}^3 ({active} active set: "
            + ", ".join(f"{k} {v}" for k, v in stats.active_counts.items())
            + f"), {views} views of {image_size}^2"
        )
        typer.echo(format_table(stats))
        if plot is not None:
            typer.echo(f"plot written to {plot}")


carve_stats.command_name = "carve-stats"
