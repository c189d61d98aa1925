"""Run-folder checkpoints: weights in safetensors, optimiser/scheduler/RNG state beside them.

Every file is written to a temporary name, flushed to disk and moved into place
(focusing.core.io), and `latest.json` is updated last, naming the complete checkpoint. Reading
trusts nothing: a truncated or empty file, a corrupt `latest.json` or non-finite weights are
named with their fault, and without an explicit step the newest intact checkpoint is used,
saying so. Temp files a killed process left are removed when a run starts: only names the
program itself writes (`.<name>.<random>.tmp` of a checkpoint file, or of a file the run keeps
at its top), never a user's `*.tmp`.

Every byte goes through Python's file objects (`_open_for_write`), so that a full disk is an
OSError with its errno: torch.save reports a failed write of its own writer as an opaque
RuntimeError ("unexpected pos"), and safetensors' writer as a SafetensorError. A failed write
leaves the earlier checkpoints intact and no part of the new one; `write_fault` words the error.

Fault injection (tests): with FOCUSING_FAULT_SLOW_WRITE=<seconds>, each checkpoint file is
fully written to its temp name, "checkpoint-write <path>" is printed to stderr, and the writer
sleeps before the rename, so a test can SIGKILL a run in the middle of a checkpoint write.
"""

from __future__ import annotations

import errno
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import BinaryIO, Callable

import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from focusing.core.io import atomic_path, temp_name_of

FAULT_ENV = "FOCUSING_FAULT_SLOW_WRITE"


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, damaged or holds non-finite values."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint could not be written (a full disk, a lost mount); earlier ones are intact."""


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


def _open_for_write(path: Path) -> BinaryIO:
    """The file object every checkpoint byte is written through (tests wrap it)."""
    return open(path, "wb")


class _Recorder:
    """A file object that remembers the OSError of a failed write: torch.save turns it into a
    RuntimeError without its errno."""

    def __init__(self, fh: BinaryIO):
        self.fh = fh
        self.error: OSError | None = None

    def write(self, data) -> int:
        """Write `data`, remembering an OSError before it is raised."""
        try:
            return self.fh.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        """Flush the file."""
        self.fh.flush()


def _atomic(path: Path, write: Callable[[BinaryIO], None]) -> None:
    with atomic_path(path, make_parents=True) as tmp:
        with _open_for_write(tmp) as fh:
            sink = _Recorder(fh)
            try:
                write(sink)
                fh.flush()
                os.fsync(fh.fileno())
            except OSError:
                raise
            except Exception:
                if sink.error is not None:
                    raise sink.error from None
                raise
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
        raise CheckpointError(f"refusing to write a checkpoint at step {step}: non-finite values "
                              f"in {', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}")
    weights = weights_path(run_dir, step)
    try:
        data = safetensors_bytes(state, metadata={"step": str(step)})
        _atomic(weights, lambda fh: fh.write(data))
        if train_state is not None:
            full = dict(train_state, step=step)
            _atomic(state_path(run_dir, step), lambda fh: torch.save(full, fh))
        marker = json.dumps({"step": step, "weights": weights.name}).encode("utf-8")
        _atomic(checkpoint_dir(run_dir) / "latest.json", lambda fh: fh.write(marker))
    except BaseException:  # no part of an unfinished checkpoint stays (it would fill the disk)
        try:
            if latest_step(run_dir) != step:
                weights.unlink(missing_ok=True)
                state_path(run_dir, step).unlink(missing_ok=True)
        except (CheckpointError, OSError):
            pass
        raise
    return weights


def newest_checkpoint(run_dir: Path) -> str:
    """'step 40 (RUN/checkpoints/step_00000040.safetensors)', the checkpoint a resume would
    start from as latest.json names it, or a sentence saying there is none."""
    try:
        step = latest_step(run_dir)
    except CheckpointError:
        step = None
    if step is None:
        steps = stored_steps(run_dir)
        step = steps[0] if steps else None
    if step is None:
        return "none: no checkpoint was written yet"
    return f"step {step} ({weights_path(run_dir, step)})"


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def write_fault(run_dir: Path, exc: OSError, what: str) -> str:
    """The one-line error for a failed write in a run folder (a full disk above all): what
    failed, the folder, and the newest intact checkpoint a --resume would continue from."""
    full = exc.errno in NO_SPACE
    if full:
        why = "no space left on device" + (" (disk quota exceeded)" if exc.errno == errno.EDQUOT
                                           else "")
    else:
        why = exc.strerror or str(exc)
    then = "free some space, then" if full else "once the folder can be written,"
    return (f"{why}: {what} in {run_dir} could not be written; the newest intact checkpoint is "
            f"{newest_checkpoint(run_dir)}; {then} continue with --resume")


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


def has_checkpoint(run_dir: Path) -> bool:
    """Whether the run folder holds any checkpoint (intact or not): latest.json or weights."""
    return (checkpoint_dir(run_dir) / "latest.json").exists() or bool(stored_steps(run_dir))


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
    raise CheckpointError(f"no intact checkpoint in {checkpoint_dir(run_dir)}: "
                          + "; ".join(faults))


def load_weights(run_dir: Path, module: torch.nn.Module, step: int | None = None) -> int:
    """Load the weights of `step` (default: newest intact) into `module`; return the step."""
    step, weights, _ = load_checkpoint(run_dir, step)
    module.load_state_dict(weights)
    return step


# The files a run writes atomically: their temp files are the only ones a cleanup removes.
_OWN_CHECKPOINT_FILE = re.compile(r"^(step_\d{8}\.(safetensors|state\.pt)|latest\.json)$")
_OWN_TOP_FILES = ("config.json", "config_changes.json", "calibration.json", "summary.json")


def stray_temp_files(run_dir: Path) -> list[Path]:
    """Temp files an interrupted atomic write of this program left in the run folder: the
    `.<name>.<random>.tmp` of a checkpoint file in checkpoints/ or of a file the run keeps at
    its top. A user's file never matches, whatever its name."""
    run_dir = Path(run_dir)
    out = []
    for folder, own in ((run_dir, lambda n: n in _OWN_TOP_FILES),
                        (checkpoint_dir(run_dir), lambda n: bool(_OWN_CHECKPOINT_FILE.match(n)))):
        if folder.is_dir():
            for p in sorted(folder.iterdir()):
                name = temp_name_of(p.name)
                if name is not None and own(name) and p.is_file() and not p.is_symlink():
                    out.append(p)
    return out


def remove_stray_temp_files(run_dir: Path) -> list[Path]:
    """Delete the temp files an interrupted write left (stray_temp_files); return them."""
    stray = stray_temp_files(run_dir)
    for p in stray:
        p.unlink(missing_ok=True)
    if stray:
        _say(f"removed {len(stray)} unfinished file(s) left by an interrupted run: "
             + ", ".join(p.name for p in stray))
    return stray
