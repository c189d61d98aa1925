"""What a run folder holds and when it may be continued.

`config.json` is the resolved setup of the run. `--resume` compares it with the setup given
now: a change of a key that fixes the model's shape (the step's `shape_keys`) is an error (the
checkpoint could not load); any other change is an error unless allowed, and an allowed change
is appended to `config_changes.json` with the step it took effect at.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from focusing.core.config import ConfigError
from focusing.core.io import write_text_atomic


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


def check_run_folder(run_dir: Path, config: dict, resume: bool, allow_changes: bool = False,
                     shape_keys: tuple[str, ...] = (), normalise=None) -> dict[str, tuple]:
    """Check (writing nothing) that `config` may start or continue the run in `run_dir`; return
    the changes a resume brings. normalise(stored) maps an older stored config to today's keys."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise FileExistsError(f"--out {run_dir} is a file, not a folder")
    for parent in run_dir.parents:
        if parent.exists():
            if not parent.is_dir():
                raise FileExistsError(f"--out {run_dir}: {parent} is a file, not a folder")
            break
    has_run = (run_dir / "checkpoints").exists()
    if not resume:
        if has_run:
            raise FileExistsError(
                f"run folder {run_dir} already holds a run; use --resume or another --out")
        return {}
    if not has_run:
        raise FileNotFoundError(f"--resume: no checkpoint in {run_dir}")
    stored = read_run_config(run_dir)
    if normalise is not None:
        stored = normalise(stored)
    changes = config_changes(stored, config)
    shape = {k: v for k, v in changes.items()
             if any(k == p or k.startswith(p + ".") for p in shape_keys)}
    if shape:
        raise ConfigError(f"--resume: the model's shape differs from the stored run ({_describe(shape)}); "
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
    history.append({"step": step, "changes": {k: {"old": a, "new": b} for k, (a, b) in changes.items()}})
    write_text_atomic(path, json.dumps(history, indent=2))
