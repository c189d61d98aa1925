"""`focusing train` and `focusing reconstruct`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def train_command(
    setup: str = typer.Option(..., "--setup", help="Registered setup name (triposf, focusing) or a TOML file."),
    data: Path = typer.Option(..., "--data", help="Folder of meshes (OBJ, PLY, OFF, STL, GLB)."),
    out: Path = typer.Option(..., "--out", help="Run folder (config, TensorBoard events, checkpoints)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Total steps (overrides train.steps)."),
    overrides: List[str] = typer.Option([], "--set", help="Override a setting: key=value (TOML value)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its newest intact checkpoint."),
    allow_changes: bool = typer.Option(False, "--allow-changes", help="With --resume: accept a setup that differs from the run's config.json (not in model shape); recorded in config_changes.json."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    eval_dir: Optional[Path] = typer.Option(None, "--eval", help="Held-out meshes reconstructed and scored at every train.eval_every steps (never trained on)."),
    debug: bool = typer.Option(False, "--debug", help="Show a Python traceback for errors."),
) -> None:
    """Train a shape VAE under a setup; also runs under `torchrun` (one process per rank)."""
    from focusing.core.config import ConfigError, resolve_setup
    from focusing.core.engine import CheckpointError, NonFiniteError
    from focusing.core.geometry.mesh import MeshError
    from focusing.core.plugins import PluginError
    from focusing.core.train.data import CacheError
    from focusing.core.train.trainer import Trainer

    def fail(exc: BaseException, code: int):
        if debug:
            raise exc
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code)

    try:
        extra = list(overrides) + ([f"train.steps={steps}"] if steps is not None else [])
        config = resolve_setup(setup, extra)  # every key checked here, before any file is written
        trainer = Trainer(config, data, out, resume=resume, progress=not quiet,
                          allow_changes=allow_changes, eval_dir=eval_dir)
    except (ConfigError, PluginError, FileNotFoundError, FileExistsError, ValueError, MeshError,
            CheckpointError, CacheError) as exc:
        fail(exc, 2)
    try:
        history = trainer.fit()
    except (NonFiniteError, CheckpointError) as exc:
        fail(exc, 1)
    finally:
        trainer.close()
    if history and trainer.dist.is_main:
        last = history[-1]
        skipped = trainer.engine.skipped_total
        typer.echo(f"trained {config.name} to step {trainer.step}: loss {last.terms['total']:.5f}"
                   f"{f' ({skipped} non-finite steps skipped)' if skipped else ''}; "
                   f"run folder {out} (tensorboard --logdir {out / 'tensorboard'})")


train_command.command_name = "train"


def reconstruct_command(
    run: Path = typer.Argument(..., help="Run folder written by `focusing train`."),
    mesh: Path = typer.Argument(..., help="Mesh to encode and decode."),
    output: Path = typer.Option(..., "-o", "--output", help="Output mesh file (.ply, .obj, ...)."),
    chunk_voxels: Optional[int] = typer.Option(None, "--chunk-voxels", help="Latent voxels per decode chunk (memory budget)."),
    step: Optional[int] = typer.Option(None, "--step", help="Checkpoint step (default: latest)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Occupancy logit above which a voxel is kept (default: the run's calibrated threshold, calibration.json)."),
) -> None:
    """Reconstruct MESH with a trained VAE and save it (in MESH's own frame)."""
    from focusing.core.geometry.mesh import MeshError
    from focusing.core.config import ConfigError
    from focusing.core.vae.reconstruct import reconstruct_file

    try:
        info = reconstruct_file(run, mesh, output, chunk_voxels, step, threshold)
    except (MeshError, FileNotFoundError, RuntimeError, ConfigError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    typer.echo(f"wrote {info['out']}: {info['vertices']} vertices, {info['faces']} faces")


reconstruct_command.command_name = "reconstruct"
