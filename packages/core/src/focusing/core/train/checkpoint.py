"""Run-folder checkpoints: weights in safetensors, optimiser/scheduler state beside them.

Every file is written to a temporary name and moved into place, so an interrupted save never
leaves a half-written checkpoint; `latest.json` is updated last and names the complete one.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from focusing.core.io import atomic_path, write_text_atomic


def _atomic(path: Path, write) -> None:
    with atomic_path(path, make_parents=True) as tmp:
        write(str(tmp))


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` atomically."""
    write_text_atomic(path, text, make_parents=True)


def save_checkpoint(run_dir: Path, step: int, model: torch.nn.Module, optimizer=None,
                    scheduler=None) -> Path:
    """Save weights (safetensors) and training state for `step`; return the weights path."""
    ckpt = Path(run_dir) / "checkpoints"
    weights = ckpt / f"step_{step:08d}.safetensors"
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    _atomic(weights, lambda tmp: save_file(state, tmp, metadata={"step": str(step)}))
    if optimizer is not None:
        train_state = {"optimizer": optimizer.state_dict(), "step": step}
        if scheduler is not None:
            train_state["scheduler"] = scheduler.state_dict()
        _atomic(ckpt / f"step_{step:08d}.state.pt", lambda tmp: torch.save(train_state, tmp))
    atomic_write_text(ckpt / "latest.json", json.dumps({"step": step, "weights": weights.name}))
    return weights


def latest_step(run_dir: Path) -> int | None:
    """Step of the newest complete checkpoint in `run_dir`, or None."""
    marker = Path(run_dir) / "checkpoints" / "latest.json"
    if not marker.exists():
        return None
    return int(json.loads(marker.read_text())["step"])


def load_weights(run_dir: Path, model: torch.nn.Module, step: int | None = None) -> int:
    """Load the weights of `step` (default: latest) into `model`; return the step."""
    step = latest_step(run_dir) if step is None else step
    if step is None:
        raise FileNotFoundError(f"no checkpoint in {run_dir}/checkpoints")
    path = Path(run_dir) / "checkpoints" / f"step_{step:08d}.safetensors"
    model.load_state_dict(load_file(path))
    return step


def load_training_state(run_dir: Path, step: int, optimizer, scheduler=None) -> None:
    """Restore optimiser (and scheduler) state saved with `step`."""
    path = Path(run_dir) / "checkpoints" / f"step_{step:08d}.state.pt"
    state = torch.load(path, weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and "scheduler" in state:
        scheduler.load_state_dict(state["scheduler"])
