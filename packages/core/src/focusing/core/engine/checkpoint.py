"""Run-folder checkpoints: weights in safetensors, optimiser/scheduler/RNG state beside them.

Every file is written to a temporary name and moved into place (focusing.core.io), and
`latest.json` is updated last, naming the complete checkpoint. Reading trusts nothing: a
truncated or empty file, a corrupt `latest.json` or non-finite weights are named with their
fault, and without an explicit step the newest intact checkpoint is used, saying so. Stray
`*.tmp` files left by a killed process are removed when a run starts.

Fault injection (tests): with FOCUSING_FAULT_SLOW_WRITE=<seconds>, each checkpoint file is
fully written to its temp name, "checkpoint-write <path>" is printed to stderr, and the writer
sleeps before the rename, so a test can SIGKILL a run in the middle of a checkpoint write.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file

from focusing.core.io import atomic_path, write_text_atomic

FAULT_ENV = "FOCUSING_FAULT_SLOW_WRITE"


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, damaged or holds non-finite values."""


def _say(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def checkpoint_dir(run_dir: Path) -> Path:
    """The checkpoints folder of a run."""
    return Path(run_dir) / "checkpoints"


def weights_path(run_dir: Path, step: int) -> Path:
    """The safetensors file of `step`."""
    return checkpoint_dir(run_dir) / f"step_{step:08d}.safetensors"


def state_path(run_dir: Path, step: int) -> Path:
    """The training-state file (optimiser, scheduler, RNG) of `step`."""
    return checkpoint_dir(run_dir) / f"step_{step:08d}.state.pt"


def _atomic(path: Path, write: Callable[[str], None]) -> None:
    with atomic_path(path, make_parents=True) as tmp:
        write(str(tmp))
        delay = os.environ.get(FAULT_ENV)
        if delay:
            print(f"checkpoint-write {path}", file=sys.stderr, flush=True)
            time.sleep(float(delay))


def nonfinite_tensors(state: dict[str, torch.Tensor]) -> list[str]:
    """Names of floating tensors holding NaN or infinity."""
    return [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]


def save_checkpoint(run_dir: Path, step: int, module: torch.nn.Module,
                    train_state: dict | None = None) -> Path:
    """Save weights (safetensors) and `train_state` (torch.save) of `step`; return the weights path.
    Refuses (CheckpointError) to write weights that are not finite."""
    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    bad = nonfinite_tensors(state)
    if bad:
        raise CheckpointError(f"refusing to write a checkpoint at step {step}: non-finite values in "
                              f"{', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}")
    weights = weights_path(run_dir, step)
    _atomic(weights, lambda tmp: save_file(state, tmp, metadata={"step": str(step)}))
    if train_state is not None:
        _atomic(state_path(run_dir, step), lambda tmp: torch.save(dict(train_state, step=step), tmp))
    write_text_atomic(checkpoint_dir(run_dir) / "latest.json",
                      json.dumps({"step": step, "weights": weights.name}), make_parents=True)
    return weights


def _fault(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else 'unreadable'}"


def read_weights(run_dir: Path, step: int) -> dict[str, torch.Tensor]:
    """The weights of `step`; CheckpointError naming the file and the fault if damaged."""
    path = weights_path(run_dir, step)
    if not path.is_file():
        raise CheckpointError(f"{path}: missing")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file")
    try:
        state = load_file(path)
    except Exception as exc:  # safetensors raises its own error types for truncation
        raise CheckpointError(f"{path}: damaged safetensors file ({_fault(exc)})") from None
    bad = nonfinite_tensors(state)
    if bad:
        raise CheckpointError(f"{path}: non-finite values in {', '.join(bad[:3])}")
    return state


def read_state(run_dir: Path, step: int) -> dict:
    """The training state of `step`; CheckpointError naming the file and the fault if damaged."""
    path = state_path(run_dir, step)
    if not path.is_file():
        raise CheckpointError(f"{path}: missing")
    try:
        state = torch.load(path, weights_only=False)
    except Exception as exc:
        raise CheckpointError(f"{path}: damaged training state ({_fault(exc)})") from None
    if not isinstance(state, dict) or "optimizer" not in state:
        raise CheckpointError(f"{path}: not a training state (no optimizer entry)")
    return state


def stored_steps(run_dir: Path) -> list[int]:
    """Steps that have a weights file, newest first."""
    out = []
    for p in checkpoint_dir(run_dir).glob("step_*.safetensors"):
        try:
            out.append(int(p.name[5:13]))
        except ValueError:
            continue
    return sorted(out, reverse=True)


def latest_step(run_dir: Path) -> int | None:
    """The step latest.json names, or None when there is none; CheckpointError if it is corrupt."""
    marker = checkpoint_dir(run_dir) / "latest.json"
    if not marker.exists():
        return None
    try:
        step = json.loads(marker.read_text())["step"]
        if not isinstance(step, int) or step < 0:
            raise ValueError(f"step {step!r} is not a step number")
        return step
    except Exception as exc:
        raise CheckpointError(f"{marker}: corrupt ({_fault(exc)})") from None


def load_checkpoint(run_dir: Path, step: int | None = None, with_state: bool = False
                    ) -> tuple[int, dict[str, torch.Tensor], dict | None]:
    """(step, weights, state or None) of `step`; without a step, of the newest intact checkpoint,
    falling back past damaged ones with a warning naming each file and its fault."""
    if step is not None:
        return step, read_weights(run_dir, step), read_state(run_dir, step) if with_state else None
    faults = []
    try:
        preferred = latest_step(run_dir)
    except CheckpointError as exc:
        faults.append(str(exc))
        _say(f"{exc}; looking for the newest intact checkpoint")
        preferred = None
    candidates = stored_steps(run_dir)
    if preferred is not None:  # latest.json names the newest complete save; newer files are partial
        candidates = [preferred] + [s for s in candidates if s < preferred]
    if not candidates:
        if faults:
            raise CheckpointError(f"no intact checkpoint in {checkpoint_dir(run_dir)}: {faults[0]}")
        raise FileNotFoundError(f"no checkpoint in {checkpoint_dir(run_dir)}")
    for i, s in enumerate(candidates):
        try:
            weights = read_weights(run_dir, s)
            state = read_state(run_dir, s) if with_state else None
        except CheckpointError as exc:
            faults.append(str(exc))
            _say(f"{exc}; trying an older checkpoint")
            continue
        if i > 0 or faults:
            _say(f"using step {s}, the newest intact checkpoint in {checkpoint_dir(run_dir)}")
        return s, weights, state
    raise CheckpointError(f"no intact checkpoint in {checkpoint_dir(run_dir)}: " + "; ".join(faults))


def load_weights(run_dir: Path, module: torch.nn.Module, step: int | None = None) -> int:
    """Load the weights of `step` (default: newest intact) into `module`; return the step."""
    step, weights, _ = load_checkpoint(run_dir, step)
    module.load_state_dict(weights)
    return step


def remove_stray_temp_files(run_dir: Path) -> list[Path]:
    """Delete `*.tmp` files an interrupted write left in the run folder; return them."""
    run_dir = Path(run_dir)
    stray = [p for d in (run_dir, checkpoint_dir(run_dir)) if d.is_dir() for p in d.glob("*.tmp")]
    for p in stray:
        p.unlink(missing_ok=True)
    if stray:
        _say(f"removed {len(stray)} unfinished file(s) left by an interrupted run: "
             + ", ".join(p.name for p in stray))
    return stray
