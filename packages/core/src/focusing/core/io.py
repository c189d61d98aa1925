"""Atomic file writes: a temp file in the target's folder, then os.replace.

A failure at any point leaves the old file (or none) and no temp file, never a half-written
one. Files get the usual umask-based mode (mkstemp alone would make them private, 0600). Temp
files are named `.<name>.<random>.tmp`, a pattern that `temp_name_of` recognises, so that a
cleanup removes the program's own leftovers and never a user's `*.tmp` file.

check_output_path says, before any work, why a file could not be written at a path.

resolve_dotdot: `mkdir -p a/missing/../run` makes a stray `a/missing`; an output path with a
`..` segment is therefore resolved before any folder of it is made.
"""

from __future__ import annotations

import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]+\.tmp$")


def temp_name_of(filename: str) -> str | None:
    """The target name of one of atomic_path's temp files ('.config.json.k3x_9a2b.tmp' ->
    'config.json'), or None for any other name."""
    match = _TEMP_NAME.match(filename)
    return match.group("name") if match else None


def resolve_dotdot(path: str | os.PathLike) -> Path:
    """`path` itself, or, when it has a `..` segment, the absolute path it names (symbolic
    links of its existing part followed), so that no folder before the `..` is made."""
    path = Path(path)
    return path.resolve() if ".." in path.parts else path


@contextmanager
def atomic_path(path: str | os.PathLike, make_parents: bool = False) -> Iterator[Path]:
    """Yield a temp path beside `path`; on a clean exit it replaces `path`, else it is removed."""
    path = Path(path)
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes, make_parents: bool = False) -> Path:
    """Write `data` to `path` atomically (flushed to disk before the rename); returns the path."""
    with atomic_path(path, make_parents) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str, make_parents: bool = False) -> Path:
    """Write UTF-8 `text` to `path` atomically; returns the path."""
    return write_bytes_atomic(path, text.encode("utf-8"), make_parents)


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
