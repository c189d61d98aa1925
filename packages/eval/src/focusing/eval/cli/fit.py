"""`focusing fit`: fit SparseFlex features to one mesh by render losses alone, save and score it.

Heavy imports (torch, the geometry layer, renderers) happen inside the command so that loading
the plugin registry for any other `focusing` command stays cheap.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from focusing.core.cli_support import fail


def fit_command(
    mesh: Path = typer.Argument(..., help="Source mesh (OBJ/PLY/OFF/STL/GLB), open or closed."),
    res: int = typer.Option(128, "--res", help="SparseFlex grid resolution R."),
    steps: int = typer.Option(
        300, "--steps", help="Adam steps (one random pool view each by default)."),
    out: Path = typer.Option(
        ..., "--out", help="Where to write the fitted mesh (format from the extension)."),
    views: int = typer.Option(
        64, "--views", help="Pool of random orbit views whose GT is rendered once."),
    views_per_step: int = typer.Option(1, "--views-per-step", help="Pool views rendered per step."),
    image_size: int = typer.Option(256, "--image-size", help="Render size S (S x S pixels)."),
    lr: float = typer.Option(
        0.02, "--lr", help="Adam learning rate (SDF channels in voxel units)."),
    renderer: str = typer.Option(
        None, "--renderer", help="Renderer plugin name (default: fastest CPU one)."),
    seed: int = typer.Option(
        0, "--seed", help="Seed of the view pool, view order and evaluation sampling."),
    points: int = typer.Option(
        100_000, "--points", help="Surface samples per mesh for the metrics."),
    tau: float = typer.Option(
        0.005, "--tau", help="F-score distance (units of the source's largest extent)."),
    init_metrics: bool = typer.Option(
        False, "--init-metrics", help="Also score the TSDF initialisation."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Fit SparseFlex to MESH by render losses (no network); save the mesh to OUT and score it.

    Optimises raw SparseFlex features on MESH's dilated surface voxels at --res with L1 depth,
    normal and mask losses from random views, starting from a view TSDF of the ground-truth
    depth maps; writes the extracted mesh in MESH's own frame and prints time, peak memory and
    the metrics of `focusing eval OUT MESH`."""
    from focusing.core.geometry.validation import MeshError
    from focusing.eval.fit import FitConfig, fit_mesh

    cfg = FitConfig(
        resolution=res, steps=steps, views=views, views_per_step=views_per_step,
        image_size=image_size, lr=lr, renderer=renderer, seed=seed, n_points=points, tau=tau,
    )
    try:
        cfg.check()
    except ValueError as exc:
        fail(str(exc))
    if not mesh.exists():
        fail(f"mesh {str(mesh)!r}: file does not exist")
    try:
        result = fit_mesh(mesh, cfg, out=out, evaluate_init=init_metrics)
    except MeshError as exc:
        fail(str(exc))
    except (LookupError, ValueError) as exc:  # unknown or unavailable renderer, bad settings
        fail(str(exc))
    except RuntimeError as exc:  # the field lost its surface: nothing was written
        fail(exc, 1)
    summary = {"out": str(out), **result.summary()}
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    m = summary["metrics"]
    lines = [
        f"focusing fit: {mesh} -> {out}",
        f"  R={res}, {summary['num_voxels']} voxels, {steps} steps, "
        f"renderer {summary['renderer']}, {summary['threads']} threads",
        f"  time {summary['seconds']:.1f} s (setup {summary['setup_seconds']:.1f} s), "
        f"peak memory {summary['peak_mb']:.0f} MiB",
        f"  chamfer_l2 {m['chamfer_l2']:.4e} (floor {m['floor_chamfer_l2']:.4e}), "
        f"F@{m['tau']:g} {m['fscore']:.4f} (floor {m['floor_fscore']:.4f}), "
        f"NC {m['normal_consistency']:.4f}",
    ]
    if "init_metrics" in summary:
        im = summary["init_metrics"]
        lines.append(f"  initialisation: chamfer_l2 {im['chamfer_l2']:.4e}, F {im['fscore']:.4f}")
    typer.echo("\n".join(lines))


fit_command.command_name = "fit"
