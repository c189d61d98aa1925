"""What every `focusing` command shares: the --debug switch and the one-line error exit.

A command ends a user error as one `error: ...` line on stderr and exit code 2, a fault of the
machine (a full disk, a run that lost its numbers) with exit code 1 (`fail`). The command's own
`--debug`, `focusing --debug` or FOCUSING_DEBUG=1 shows the traceback instead, for a bug report
(`raise_if_debugging`). The checks of an output path made before any work are library code,
used by the commands and by reconstruct_file and fit_mesh alike: `focusing.core.io.
check_output_path` and `focusing.core.geometry.meshio.check_mesh_output`.
"""

from __future__ import annotations

import os
from typing import NoReturn

import typer

__all__ = [
    "debugging",
    "fail",
    "raise_if_debugging",
    "set_debugging",
]

_debug = False


def set_debugging(on: bool) -> None:
    """Record `focusing --debug` (the root command's flag) for debugging()."""
    global _debug
    _debug = on


def debugging() -> bool:
    """Whether `--debug` or FOCUSING_DEBUG=1 asks for tracebacks of user errors too."""
    return _debug or os.environ.get("FOCUSING_DEBUG", "").strip() not in ("", "0")


def fail(message: object, code: int = 2) -> NoReturn:
    """End the command: `error: MESSAGE` on stderr and exit code `code` (2: a user error, the
    default; 1: a fault of the machine or of the run)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def raise_if_debugging(exc: BaseException, debug: bool = False) -> None:
    """Re-raise `exc`, traceback and all, when the command's own --debug (`debug`), `focusing
    --debug` or FOCUSING_DEBUG=1 asks for it; else return (the caller then fails)."""
    if debug or debugging():
        raise exc
