"""What every `focusing` command shares: the --debug switch, the one-line error exit, and the
checks of an output path made before any work.

A command ends a user error as one `error: ...` line on stderr and exit code 2, a fault of the
machine (a full disk, a run that lost its numbers) with exit code 1 (`fail`). The command's own
`--debug`, `focusing --debug` or FOCUSING_DEBUG=1 shows the traceback instead, for a bug report
(`raise_if_debugging`). Light to import: the mesh formats are read inside check_mesh_output.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import typer

__all__ = [
    "check_mesh_output",
    "check_output_path",
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


def check_output_path(path: str | os.PathLike, option: str = "--out") -> Path:
    """The path, or a ValueError saying why a file cannot be written there (folder missing or
    not writable, a parent is a file, the path is a folder)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{option} {str(path)!r} is a folder; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    for p in [parent, *parent.parents]:
        if p.exists() and not p.is_dir():
            raise ValueError(f"{option} {str(path)!r}: {str(p)!r} is a file, not a folder")
        if p.is_dir():
            break
    if not parent.is_dir():
        raise ValueError(f"{option} {str(path)!r}: folder {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {str(path)!r}: folder {str(parent)!r} is not writable")
    return path


def check_mesh_output(path: str | os.PathLike, option: str = "-o") -> Path:
    """The path of a mesh to be written, checked before any work: a supported extension and a
    writable folder (check_output_path); MeshError (a ValueError) saying what is wrong."""
    from focusing.core.geometry.meshio import SUPPORTED_FORMATS
    from focusing.core.geometry.validation import MeshError

    try:
        path = check_output_path(path, option)
    except ValueError as exc:
        raise MeshError(str(exc)) from None
    ext = path.suffix.lower()
    if ext not in SUPPORTED_FORMATS:
        raise MeshError(f"{option} {str(path)!r}: unknown mesh format "
                        f"{ext or '(no extension)'!r}; supported: "
                        f"{', '.join(sorted(SUPPORTED_FORMATS))}")
    return path
