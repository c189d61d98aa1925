"""`focusing prepare`: the command over core.data.prepare (heavy imports inside the command).

Exit codes: 0 when every shape is ready, 1 when some failed (the summary counts them by
reason; the manifest names each), 2 for a user error (a bad setup, a busy or foreign --out, a
set prepared with other settings, --ray without Ray or without a cluster to join), 130 when
interrupted (rerun the command to continue).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def prepare_command(
    data: Path = typer.Argument(
        ..., help="Folder of meshes (OBJ, PLY, OFF, STL, GLB), or a text file listing mesh paths "
                  "(one a line; relative to the file's folder)."),
    out: Path = typer.Option(..., "--out", help="The prepared data set (made if missing; a rerun "
                                                "continues it)."),
    setup: str = typer.Option("focusing", "--setup",
                              help="Setup name or TOML file whose record settings to prepare for."),
    overrides: List[str] = typer.Option([], "--set", help="Override a setting: key=value."),
    workers: Optional[int] = typer.Option(
        None, "--workers", min=0, help="Worker processes (default: the cores; 0: this process)."),
    retry_failed: bool = typer.Option(False, "--retry-failed",
                                      help="Try the shapes that failed before again."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1,
                                        help="Prepare the first N meshes of the list only."),
    shard: Optional[str] = typer.Option(
        None, "--shard", help="RANK/WORLD: every WORLD-th mesh of the list from RANK on (one "
                              "cluster task's share; give each task its own --out)."),
    ray: Optional[str] = typer.Option(
        None, "--ray", help="Build the shapes as Ray tasks (needs the extra focusing-core[ray]): "
                            "'auto' joins this machine's cluster (ray start, RAY_ADDRESS), "
                            "'local' starts one here, or a cluster's address. The meshes must "
                            "be readable at the same paths on every node; this process writes "
                            "DATASET. --workers is ignored."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Prepare meshes into a data set for `focusing train --data`: resumable, fault tolerant."""
    from focusing.core.cli_support import fail
    from focusing.core.config import ConfigError, resolve_setup
    from focusing.core.data.prepare import parse_shard, prepare_dataset, summary
    from focusing.core.data.ray_jobs import RayUnavailable
    from focusing.core.data.records import CacheError

    try:
        config = resolve_setup(setup, list(overrides))
        result = prepare_dataset(
            data, out, config, workers=_cores() if workers is None else workers,
            retry_failed=retry_failed, limit=limit, shard=parse_shard(shard) if shard else None,
            progress=not quiet, ray=ray)
    except (ConfigError, CacheError, ValueError, FileNotFoundError, FileExistsError,
            NotADirectoryError, PermissionError, RayUnavailable) as exc:
        fail(exc)
    except KeyboardInterrupt:
        typer.echo(f"interrupted: the finished shapes are in {out}; run the same command again "
                   "to continue", err=True)
        raise typer.Exit(130)
    for line in summary(result, out):
        typer.echo(line)
    raise typer.Exit(result.exit_code)


prepare_command.command_name = "prepare"
