"""focusing-core's own registrations (loaded through the `focusing` entry point like any plugin)."""

from __future__ import annotations

from pathlib import Path

from focusing.core.plugin_system import hookimpl


@hookimpl
def focusing_sparse_backends() -> list[type]:
    """Built-in sparse backends."""
    # the adapters import their libraries lazily: listing them costs nothing when absent
    from focusing.core.sparse.backends.minkowski import MinkowskiBackend
    from focusing.core.sparse.backends.spconv import SpconvBackend
    from focusing.core.sparse.backends.pure_torch import TorchBackend

    return [TorchBackend, SpconvBackend, MinkowskiBackend]


@hookimpl
def focusing_upsamplers() -> list[type]:
    """Built-in upsamplers."""
    from focusing.core.vae.upsamplers import SelfPruningUpsampler, SubdivideUpsampler

    return [SelfPruningUpsampler, SubdivideUpsampler]


@hookimpl
def focusing_setups() -> list:
    """Built-in setup presets shipped as TOML files (named by file stem)."""
    return sorted((Path(__file__).parent / "setups").glob("*.toml"))


@hookimpl
def focusing_commands() -> list:
    """Core's CLI subcommands beyond `plugins`."""
    from focusing.core.data.cli import prepare_command
    from focusing.core.vae.cli import reconstruct_command, train_command

    return [train_command, reconstruct_command, prepare_command]
