"""Legacy import path, kept only for packages/flow: inference lives in focusing.core.vae.reconstruct."""

from __future__ import annotations

from pathlib import Path

from focusing.core.vae.reconstruct import decode_in_chunks, reconstruct_mesh  # noqa: F401
from focusing.core.vae.reconstruct import load_model as _load_model


def load_model(run_dir: Path, step: int | None = None):
    """(model, config dict) of a run folder (see focusing.core.vae.reconstruct.load_model)."""
    model, setup = _load_model(run_dir, step)
    return model, setup.to_dict()
