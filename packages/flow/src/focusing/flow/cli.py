"""`focusing train-flow`, `focusing generate` and `focusing eval-flow` (registered through the
commands hook; heavy imports happen inside the commands)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from focusing.core.cli_support import fail


ALLOW_VAE_CHANGE_HELP = ("Use the shape VAE even when its weights are no longer those the "
                         "latent flow was trained on (a warning instead of an error).")


def train_flow_command(
    stage: str = typer.Option(
        ..., "--stage", help="structure (structure VAE, then structure flow) or latent."),
    vae: Optional[Path] = typer.Option(
        None, "--vae", help="Shape VAE run folder (from `focusing train`)."),
    data: Path = typer.Option(..., "--data", help="Folder of meshes (the VAE's training meshes)."),
    out: Path = typer.Option(
        ..., "--out", help="Run folder (config, summary, TensorBoard, checkpoints)."),
    steps: Optional[int] = typer.Option(
        None, "--steps", help="Flow steps (train.steps; a --set train.steps must agree)."),
    overrides: List[str] = typer.Option(
        [], "--set", help="Override a flow setting: key=value (TOML value)."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue the run in --out from its newest intact checkpoint (its "
                                "stored config, --set on top)."),
    allow_changes: bool = typer.Option(
        False, "--allow-changes", help="With --resume: accept --set changes to the stored config "
                                       "(not in model shape); recorded in config_changes.json."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    debug: bool = typer.Option(False, "--debug", help="Show a Python traceback for errors."),
) -> None:
    """Train one stage of the image-to-3D flow on the latents of a trained shape VAE (on core's
    training engine; also runs under `torchrun`)."""
    from focusing.core.cli_support import raise_if_debugging
    from focusing.core.config import ConfigError, apply_steps, replace_setting
    from focusing.core.engine import CheckpointError, NonFiniteError
    from focusing.core.engine.runfolder import hold_run_folder
    from focusing.core.plugin_system import PluginError
    from focusing.core.plugin_system import get_registry
    from focusing.flow.config import resolve_flow_setup
    from focusing.flow.stages import vae_run_setup
    from focusing.flow.train import FlowTrainer, check_flow_setup, last_loss, resume_config

    stages = get_registry("flow_stage").names()
    if stage not in stages:
        fail(f"--stage must be one of {', '.join(stages)}, got {stage!r}")
    try:
        # the typed, checked setup; --stage, --vae and --steps set its fields (config.apply_steps:
        # a --set train.steps that disagrees is an error)
        if not resume:  # a wrong --vae, --steps or --set is said before --out is made
            if vae is None:
                fail("--vae RUN is required (the shape VAE run folder)")
            vae_setup = vae_run_setup(vae)
            setup = apply_steps(resolve_flow_setup(overrides), overrides, steps)
            setup = replace_setting(replace_setting(setup, "stage", stage), "vae_run", str(vae))
            check_flow_setup(setup, vae_setup)
        out = hold_run_folder(out, resume)  # one process per run folder, until the command ends
        if resume:
            if not (out / "config.json").exists():
                fail(f"--resume: {out} holds no run")
            setup = apply_steps(resume_config(out, overrides), overrides, steps)
            if setup.stage != stage:
                fail(f"--resume: {out} is a {setup.stage} run, not {stage}")
        trainer = FlowTrainer(setup, data, out, resume=resume, progress=not quiet,
                              allow_changes=allow_changes)
    except (ConfigError, PluginError, FileNotFoundError, FileExistsError, ValueError,
            CheckpointError) as exc:
        raise_if_debugging(exc, debug)
        fail(str(exc))
    try:
        history = trainer.fit()
    except (NonFiniteError, CheckpointError) as exc:
        raise_if_debugging(exc, debug)
        fail(exc, 1)
    finally:
        trainer.close()
    if trainer.dist.is_main:
        skipped = trainer.engine.skipped_total
        typer.echo(f"trained the {stage} flow to step {trainer.step}: loss {last_loss(history):.5f}"
                   f"{f' ({skipped} non-finite steps skipped)' if skipped else ''}; "
                   f"run folder {out} (tensorboard --logdir {out})")


train_flow_command.command_name = "train-flow"


def generate_command(
    image: Optional[Path] = typer.Argument(
        None, help="Condition image (PNG with alpha, or any RGB image)."),
    structure: Path = typer.Option(..., "--structure", help="Structure-stage run folder."),
    latent: Path = typer.Option(..., "--latent", help="Latent-stage run folder."),
    output: Path = typer.Option(
        ..., "-o", "--output", help="Output mesh (.ply, .obj, ...), in the unit box."),
    steps: Optional[int] = typer.Option(
        None, "--steps", help="Euler steps (default: the runs' sampler.steps)."),
    cfg: Optional[float] = typer.Option(
        None, "--cfg", help="CFG strength of both stages (default: the runs')."),
    seed: int = typer.Option(0, "--seed", help="Noise seed (same seed, same mesh)."),
    mesh: Optional[Path] = typer.Option(
        None, "--mesh", help="Condition on a render of this mesh instead of IMAGE."),
    view: int = typer.Option(
        0, "--view", help="With --mesh: the view index (views >= views.count were held out)."),
    threshold: Optional[float] = typer.Option(
        None, "--threshold", help="Shape VAE occupancy logit to keep a voxel (default: the VAE "
                                  "run's calibrated one, calibration.json)."),
    allow_vae_change: bool = typer.Option(False, "--allow-vae-change", help=ALLOW_VAE_CHANGE_HELP),
) -> None:
    """Generate a mesh from one image (or from a render of --mesh) with the two flow stages."""
    from focusing.core.geometry.meshio import check_mesh_output
    from focusing.core.geometry.meshio import save_mesh
    from focusing.core.geometry.validation import MeshError
    from focusing.flow.generate import ImageTo3D
    from focusing.flow.views import load_image

    if (image is None) == (mesh is None):
        fail("give either IMAGE or --mesh MESH")
    try:
        check_mesh_output(output, "-o")  # the output and the image are checked before any work
        rgba = load_image(image) if image is not None else None
        pipe = ImageTo3D(structure, latent, allow_vae_change)
        rgba = rgba if rgba is not None else pipe.render_view(mesh, view)
        result = pipe.generate(rgba, steps, cfg, cfg, seed, threshold)
    except (MeshError, FileNotFoundError, ValueError, RuntimeError) as exc:
        fail(str(exc))
    if len(result.mesh.faces) == 0:
        fail("the decoded surface is empty: the sampled latents hold no surface for the shape VAE "
              "(after short training of the VAE or the latent flow); train longer, or try another "
              "--seed")
    save_mesh(result.mesh, output)
    typer.echo(f"wrote {output}: {len(result.mesh.vertices)} vertices, "
               f"{len(result.mesh.faces)} faces, "
               f"{len(result.structure)} latent voxels, {result.seconds:.2f} s")


generate_command.command_name = "generate"


def eval_flow_command(
    structure: Path = typer.Option(..., "--structure", help="Structure-stage run folder."),
    latent: Path = typer.Option(..., "--latent", help="Latent-stage run folder."),
    data: Path = typer.Option(
        ..., "--data", help="Folder of meshes to evaluate (their held-out views are used)."),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Write the per-view results and means as JSON."),
    steps: Optional[int] = typer.Option(None, "--steps"),
    cfg: Optional[float] = typer.Option(None, "--cfg"),
    seed: int = typer.Option(0, "--seed"),
    points: int = typer.Option(
        100_000, "--points", help="Surface samples per mesh for Chamfer/F-score."),
    threshold: Optional[float] = typer.Option(None, "--threshold"),
    allow_vae_change: bool = typer.Option(False, "--allow-vae-change", help=ALLOW_VAE_CHANGE_HELP),
) -> None:
    """Structure IoU, Chamfer and F@0.005/0.01 against the source mesh, and seconds per shape,
    from the held-out views (indices views.count ..) of every mesh in --data."""
    from focusing.core.io import check_output_path
    from focusing.core.io import write_text_atomic
    from focusing.flow.evaluate import evaluate_flow, format_table

    try:
        if out is not None:  # checked before any work
            check_output_path(out, "--out")
        report = evaluate_flow(structure, latent, data, steps, cfg, seed, points, threshold,
                               allow_vae_change)
    except (FileNotFoundError, ValueError, ImportError) as exc:
        fail(str(exc))
    typer.echo(format_table(report))
    if out is not None:
        write_text_atomic(out, json.dumps(report, indent=2), make_parents=True)
        typer.echo(f"wrote {out}")


eval_flow_command.command_name = "eval-flow"
