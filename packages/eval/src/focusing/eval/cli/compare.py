"""`focusing compare`: the side-by-side study of setups (the compare package) and its scaling
study (scaling.py). Heavy imports happen inside the command so the CLI stays quick to load."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import typer


def compare_command(
    data: Path = typer.Option(..., "--data",
                              help="Folder of meshes to train on (and reconstruct)."),
    out: Path = typer.Option(
        ..., "--out", help="Output folder: runs/, recon/, plots/, report.md, report.json."),
    setups: str = typer.Option(
        "triposf,focusing", "--setups",
        help="Comma-separated setup specs NAME[:key=value...], e.g. "
             "focusing,focusing:selector=frustum,focusing:upsampler=subdivide. Shorthands: "
             "selector=X (the setup's own selector stage), upsampler=X, backend=X, renderer=X."),
    budget: str = typer.Option("small", "--budget", help="small | medium | a budget TOML file."),
    eval_dir: Path = typer.Option(None, "--eval",
                                  help="Folder of held-out meshes, never trained on."),
    as_json: bool = typer.Option(False, "--json", help="Print report.json to stdout at the end."),
    scaling: bool = typer.Option(
        False, "--scaling",
        help="Instead: one step's memory and time per setup at output 128, 256, 512 (1024 if it "
             "fits), log-log fits and the 1024^3 extrapolation (scaling.md, scaling.json)."),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Replace an earlier comparison in --out."),
    resume: bool = typer.Option(
        False, "--resume",
        help="Go on with an interrupted comparison in --out (same options): keep its probes "
             "and finished trainings, train the rest from their start, then evaluate and "
             "report everything."),
    seeds: int = typer.Option(
        1, "--seeds", min=1,
        help="Train every setup this many times (train.seed B..B+K-1, one shared warm-up per "
             "seed); the report gives mean and spread over the seeds and calls a difference "
             "real only when the setups' min..max ranges do not overlap."),
    memory_cap: float = typer.Option(
        None, "--memory-cap", metavar="GB",
        help="Equal memory: train each setup at the highest output resolution whose training "
             "peak, measured by probe steps in a fresh process, fits under GB (far-plane setups "
             "try smaller alphas first), for the budget's minutes; overrides the budget's "
             "memory_cap_gb. Probes and choices go to report.json and report.md."),
) -> None:
    """Train setups under one budget (each in its own process), reconstruct, evaluate, report."""
    from focusing.core.cli_support import fail
    from focusing.core.plugin_system import PluginError
    from focusing.eval.compare import CompareError, compare

    command = "focusing compare " + " ".join(shlex.quote(a) for a in sys.argv[2:]) \
        if len(sys.argv) > 1 and sys.argv[1] == "compare" else ""
    try:
        if scaling:  # checked before the output folder is locked (created)
            ignored = [opt for opt, given in (("--seeds", seeds != 1),
                                              ("--memory-cap", memory_cap is not None),
                                              ("--eval", eval_dir is not None),
                                              ("--resume", resume)) if given]
            if ignored:
                raise CompareError(f"{', '.join(ignored)} applies to the comparison, not to "
                                   "--scaling (which probes one step per setup and resolution)")
        from focusing.core.engine.lock import hold_for_command

        out = hold_for_command(out)  # one process per output folder, until the command ends
        if scaling:
            from focusing.eval.scaling import scaling_study

            rep = scaling_study(data, setups, budget, out, command=command)
        else:
            rep = compare(data, setups, budget, out, eval_dir=eval_dir, overwrite=overwrite,
                          command=command, seeds=seeds, memory_cap_gb=memory_cap,
                          resume=resume)
    except (CompareError, PluginError, FileNotFoundError) as exc:
        fail(exc)
    if as_json:
        from focusing.eval.report import _clean

        typer.echo(json.dumps(_clean(rep), indent=2))


compare_command.command_name = "compare"
