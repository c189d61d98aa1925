"""Legacy checkpoint calls, kept only for packages/flow until its trainers move onto the engine
(focusing.core.engine). New code: focusing.core.engine.checkpoint and focusing.core.io."""

from __future__ import annotations

from pathlib import Path

import torch

from focusing.core.engine.checkpoint import latest_step, load_weights, read_state  # noqa: F401
from focusing.core.engine.checkpoint import save_checkpoint as _save
from focusing.core.io import write_text_atomic


def atomic_write_text(path: Path, text: str) -> None:
    """Deprecated: use focusing.core.io.write_text_atomic."""
    write_text_atomic(path, text, make_parents=True)


def save_checkpoint(run_dir: Path, step: int, model: torch.nn.Module, optimizer=None,
                    scheduler=None) -> Path:
    """Weights and optimiser/scheduler state of `step` (the engine's checked writer)."""
    state = None
    if optimizer is not None:
        state = {"optimizer": optimizer.state_dict()}
        if scheduler is not None:
            state["scheduler"] = scheduler.state_dict()
    return _save(run_dir, step, model, state)


def load_training_state(run_dir: Path, step: int, optimizer, scheduler=None) -> None:
    """Restore optimiser (and scheduler) state saved with `step`."""
    state = read_state(run_dir, step)
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and "scheduler" in state:
        scheduler.load_state_dict(state["scheduler"])
