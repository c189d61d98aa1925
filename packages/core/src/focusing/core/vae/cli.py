"""`focusing train` and `focusing reconstruct`.

`train` ends every fault of the user or the machine in one `error: ...` line (a traceback only
with --debug): a busy or foreign --out, a full disk, a bad setting. A Ctrl-C (or SIGTERM)
leaves a checkpoint and the command that continues the run.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import List, Optional

import typer


def _resolve(setup: str, overrides: list[str], steps: int | None):
    """The checked setup: every --set, train.steps included, is checked before --steps sets the
    typed train.steps (config.apply_steps: a --set train.steps that --steps contradicts is an
    error)."""
    from focusing.core.config import apply_steps, resolve_setup

    return apply_steps(resolve_setup(setup, overrides), overrides, steps)


def _resume_command(setup: str, data: Path, out: Path, steps: int | None, overrides: list[str],
                    eval_dir: Path | None) -> str:
    """The `focusing train ... --resume` command that continues this run."""
    args = ["focusing", "train", "--setup", setup, "--data", str(data), "--out", str(out)]
    args += ["--steps", str(steps)] if steps is not None else []
    for item in overrides:
        args += ["--set", item]
    args += ["--eval", str(eval_dir)] if eval_dir is not None else []
    return " ".join(shlex.quote(a) for a in args + ["--resume"])


def train_command(
    setup: str = typer.Option(
        ..., "--setup", help="Registered setup name (triposf, focusing) or a TOML file."),
    data: Path = typer.Option(
        ..., "--data", help="Folder of meshes (OBJ, PLY, OFF, STL, GLB), or a data set made by "
                            "`focusing prepare`."),
    out: Path = typer.Option(
        ..., "--out", help="Run folder (config, TensorBoard events, checkpoints)."),
    steps: Optional[int] = typer.Option(
        None, "--steps", help="Total steps (train.steps; a --set train.steps must agree)."),
    overrides: List[str] = typer.Option(
        [], "--set", help="Override a setting: key=value (TOML value)."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue the run in --out from its newest intact checkpoint "
                                "(from step 0 when it stopped before its first)."),
    allow_changes: bool = typer.Option(
        False, "--allow-changes",
        help="With --resume: accept a setup that differs from the run's config.json (not in "
             "model shape); recorded in config_changes.json."),
    allow_nonempty_out: bool = typer.Option(
        False, "--allow-nonempty-out",
        help="Write the run into an --out folder that holds other files (never over a file the "
             "run writes itself); without it such a folder is refused."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    eval_dir: Optional[Path] = typer.Option(
        None, "--eval", help="Held-out meshes reconstructed and scored at every "
                             "train.eval_every steps (never trained on)."),
    debug: bool = typer.Option(False, "--debug", help="Show a Python traceback for errors."),
) -> None:
    """Train a shape VAE under a setup; also runs under `torchrun` (one process per rank)."""
    from focusing.core.cli_support import fail, raise_if_debugging
    from focusing.core.config import ConfigError
    from focusing.core.engine import CheckpointError, NonFiniteError, TrainingInterrupted
    from focusing.core.engine.checkpoint import write_fault
    from focusing.core.data.records import CacheError
    from focusing.core.geometry.validation import MeshError
    from focusing.core.plugin_system import PluginError
    from focusing.core.vae.train.trainer import Trainer

    try:
        config = _resolve(setup, list(overrides), steps)  # every key checked before any write
        trainer = Trainer(config, data, out, resume=resume, progress=not quiet,
                          allow_changes=allow_changes, eval_dir=eval_dir,
                          allow_nonempty_out=allow_nonempty_out)
    except (ConfigError, PluginError, FileNotFoundError, FileExistsError, ValueError, MeshError,
            CheckpointError, CacheError, PermissionError) as exc:
        raise_if_debugging(exc, debug)
        fail(exc, 2)
    run_dir = trainer.run_dir
    resume_with = _resume_command(setup, data, run_dir, steps, list(overrides), eval_dir)
    try:
        if resume and trainer.finished():
            if trainer.dist.is_main:
                typer.echo(f"run {run_dir} is already finished: step {trainer.step} of "
                           f"train.steps = {config.train.steps}; nothing to train (to train "
                           "further, raise --steps and add --allow-changes)")
            return
        history = trainer.fit()
    except TrainingInterrupted as exc:
        if trainer.dist.is_main:
            typer.echo(f"{exc}\nto continue: {resume_with}", err=True)
        raise typer.Exit(exc.exit_code)
    except (NonFiniteError, CheckpointError) as exc:
        raise_if_debugging(exc, debug)
        fail(exc, 1)
    except OSError as exc:  # a full disk while writing TensorBoard events or quality rows
        raise_if_debugging(exc, debug)
        fail(write_fault(run_dir, exc, "a file of the run"), 1)
    finally:
        trainer.close()
    if history and trainer.dist.is_main:
        last = history[-1]
        skipped = trainer.engine.skipped_total
        typer.echo(f"trained {config.name} to step {trainer.step}: loss {last.terms['total']:.5f}"
                   f"{f' ({skipped} non-finite steps skipped)' if skipped else ''}; "
                   f"run folder {run_dir} (tensorboard --logdir {run_dir / 'tensorboard'})")


train_command.command_name = "train"


def reconstruct_command(
    run: Path = typer.Argument(..., help="Run folder written by `focusing train`."),
    mesh: Path = typer.Argument(..., help="Mesh to encode and decode."),
    output: Path = typer.Option(..., "-o", "--output", help="Output mesh file (.ply, .obj, ...)."),
    chunk_voxels: Optional[int] = typer.Option(
        None, "--chunk-voxels", help="Latent voxels per decode chunk (memory budget)."),
    step: Optional[int] = typer.Option(None, "--step", help="Checkpoint step (default: latest)."),
    threshold: Optional[float] = typer.Option(
        None, "--threshold",
        help="Occupancy logit above which a voxel is kept (default: the run's calibrated "
             "threshold, calibration.json)."),
    resolution: Optional[int] = typer.Option(
        None, "--resolution",
        help="Output grid (default: the trained one). A power-of-two multiple of it "
             "reconstructs finer than training: the VAE is local (paper sec. 4.2)."),
) -> None:
    """Reconstruct MESH with a trained VAE and save it (in MESH's own frame)."""
    from focusing.core.cli_support import fail
    from focusing.core.config import ConfigError
    from focusing.core.geometry.validation import MeshError
    from focusing.core.vae.reconstruct import reconstruct_file

    try:
        info = reconstruct_file(run, mesh, output, chunk_voxels, step, threshold, resolution)
    except (MeshError, FileNotFoundError, RuntimeError, ConfigError) as exc:
        fail(exc)
    typer.echo(f"wrote {info['out']}: {info['vertices']} vertices, {info['faces']} faces")


reconstruct_command.command_name = "reconstruct"
