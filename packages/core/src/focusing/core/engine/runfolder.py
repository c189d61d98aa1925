"""What a run folder holds, who may write it, and when it may be continued.

`config.json` is the resolved setup of the run. `--resume` compares it with the setup given
now: a change of a key that fixes the model's shape (the step's `shape_keys`) is an error (the
checkpoint could not load); any other change is an error unless allowed, and an allowed change
is appended to `config_changes.json` with the step it took effect at. A run stopped before its
first checkpoint resumes from step 0 with its stored setup (else the folder would be a dead end:
neither resumable nor, holding a run, restartable).

claim_run_folder is the first thing a trainer does with `--out`, before it writes anything:
- a folder that is not empty and is not a run (a user's folder: notes, a thesis, their own
  config.json) is refused, unless the user says to use it (`--allow-nonempty-out`), and even
  then a file the run would overwrite is refused: a user's file is never modified;
- it takes the folder's lock (engine/lock.py): one process per run folder.
A folder is a run folder when it holds the lock file (every run since locks), `checkpoints/`,
or `config.json` beside `tensorboard/` (runs made before locks).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from focusing.core.config import ConfigError
from focusing.core.engine.lock import (
    LOCK_NAME, FolderLock, acquire, release_when_command_ends, writes_here,
)
from focusing.core.io import resolve_dotdot, write_text_atomic

# What a run writes in its folder (trainers, flow stages, calibration, evaluation): with
# --allow-nonempty-out, a user's file of one of these names refuses the folder.
RUN_FILES = ("config.json", "config_changes.json", "calibration.json", "quality.jsonl",
             "summary.json", "checkpoints", "tensorboard", LOCK_NAME)
NONEMPTY_FLAG = "--allow-nonempty-out"


def flatten(table: dict, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}."""
    out = {}
    for key, value in table.items():
        where = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, where + "."))
        else:
            out[where] = value
    return out


def config_changes(old: dict, new: dict) -> dict[str, tuple[Any, Any]]:
    """Keys whose value differs between two configs: key -> (old, new); absent is None."""
    a, b = flatten(old), flatten(new)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def read_run_config(run_dir: Path) -> dict:
    """The stored config.json of a run; FileNotFoundError / ConfigError naming the file."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder (no config.json)")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: corrupt ({exc})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: corrupt (not a JSON object)")
    return config


def _describe(changes: dict) -> str:
    items = [f"{k}: {json.dumps(a)} -> {json.dumps(b)}" for k, (a, b) in changes.items()]
    return ", ".join(items[:6]) + (f" (and {len(items) - 6} more)" if len(items) > 6 else "")


def is_run_folder(folder: Path) -> bool:
    """Whether `folder` holds a run (see the module docstring), whatever its state."""
    folder = Path(folder)
    return ((folder / LOCK_NAME).is_file() or (folder / "checkpoints").is_dir()
            or ((folder / "config.json").is_file() and (folder / "tensorboard").is_dir()))


def _check_out_path(run_dir: Path) -> None:
    """FileExistsError when --out or a folder above it is a file."""
    if run_dir.exists() and not run_dir.is_dir():
        raise FileExistsError(f"--out {run_dir} is a file, not a folder")
    for parent in run_dir.parents:
        if parent.exists():
            if not parent.is_dir():
                raise FileExistsError(f"--out {run_dir}: {parent} is a file, not a folder")
            break


def _listing(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def claim_run_folder(run_dir: Path, resume: bool = False, allow_nonempty: bool = False,
                     flag: str | None = NONEMPTY_FLAG) -> FolderLock:
    """Lock `run_dir` for a run (made if missing; a `..` in it resolved first, see lock.folder);
    refuse, writing nothing, a non-empty folder that is not a run unless allow_nonempty, and
    then still one holding a file the run writes. `flag`: the option named in that error."""
    run_dir = resolve_dotdot(run_dir)
    _check_out_path(run_dir)
    if resume and not run_dir.is_dir():
        raise FileNotFoundError(f"--resume: {run_dir} does not exist")
    if run_dir.is_dir() and not is_run_folder(run_dir):
        entries = sorted(os.listdir(run_dir))
        if entries and resume:
            raise FileNotFoundError(f"--resume: {run_dir} is not a run folder (it holds "
                                    f"{_listing(entries)}, and no config.json or checkpoints/)")
        if entries and not allow_nonempty:
            raise FileExistsError(
                f"--out {run_dir} is not empty and holds no run ({_listing(entries)}); choose a "
                "new or empty folder" + (f", or pass {flag} to write the run beside these files"
                                         if flag else ""))
        clash = [name for name in RUN_FILES if name in entries]
        if clash:
            raise FileExistsError(f"--out {run_dir} holds {_listing(clash)} of its own, which a "
                                  "run would overwrite; move it away or choose another --out")
    return acquire(run_dir, keep=True)


def hold_run_folder(run_dir: Path, resume: bool = False) -> Path:
    """claim_run_folder for the running CLI command (released when it ends; under torchrun on
    rank 0 only); the folder to use."""
    if not writes_here():
        return resolve_dotdot(run_dir)
    lock = claim_run_folder(run_dir, resume, flag=None)
    release_when_command_ends(lock)
    return lock.folder


def check_run_folder(run_dir: Path, config: dict, resume: bool, allow_changes: bool = False,
                     shape_keys: tuple[str, ...] = (), normalise=None) -> dict[str, tuple]:
    """Check (writing nothing) that `config` may start or continue the run in `run_dir`; return
    the changes a resume brings. normalise(stored) maps an older stored config to today's keys.
    A resume of a run without a checkpoint is allowed: it starts from step 0 (Engine)."""
    run_dir = resolve_dotdot(run_dir)
    _check_out_path(run_dir)
    has_run = (run_dir / "checkpoints").exists()
    if not resume:
        if has_run:
            raise FileExistsError(
                f"run folder {run_dir} already holds a run; use --resume or another --out")
        return {}
    if not (run_dir / "config.json").is_file():
        if has_run:
            raise FileNotFoundError(f"--resume: {run_dir} holds checkpoints but no config.json")
        raise FileNotFoundError(f"--resume: {run_dir} holds no run yet (no config.json): the run "
                                "stopped before it started; start it again without --resume")
    stored = read_run_config(run_dir)
    if normalise is not None:
        stored = normalise(stored)
    changes = config_changes(stored, config)
    shape = {k: v for k, v in changes.items()
             if any(k == p or k.startswith(p + ".") for p in shape_keys)}
    if shape:
        raise ConfigError("--resume: the model's shape differs from the stored run "
                          f"({_describe(shape)}); "
                          "its checkpoints cannot load into it: start a new run with another --out")
    if changes and not allow_changes:
        raise ConfigError(f"--resume: the setup differs from {run_dir / 'config.json'} "
                          f"({_describe(changes)}); pass --allow-changes to continue with it "
                          "(the change is recorded in config_changes.json)")
    return changes


def record_changes(run_dir: Path, step: int, changes: dict) -> None:
    """Append allowed resume changes to config_changes.json."""
    if not changes:
        return
    path = Path(run_dir) / "config_changes.json"
    history = []
    if path.exists():
        try:
            history = json.loads(path.read_text())
        except json.JSONDecodeError:
            history = []
    history.append({"step": step,
                    "changes": {k: {"old": a, "new": b} for k, (a, b) in changes.items()}})
    write_text_atomic(path, json.dumps(history, indent=2))
