"""focusing-core's own registrations (loaded through the `focusing` entry point like any plugin)."""

from __future__ import annotations

from focusing.core.plugins import hookimpl


@hookimpl
def focusing_sparse_backends() -> list[type]:
    """Built-in sparse backends."""
    return []


@hookimpl
def focusing_upsamplers() -> list[type]:
    """Built-in upsamplers."""
    return []


@hookimpl
def focusing_setups() -> list:
    """Built-in setup presets shipped as TOML files."""
    return []


@hookimpl
def focusing_commands() -> list:
    """Core's CLI subcommands beyond `plugins`."""
    return []
