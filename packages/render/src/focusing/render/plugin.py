"""focusing-render's registrations through the `focusing` entry point."""

from __future__ import annotations

from focusing.core.plugins import hookimpl


@hookimpl
def focusing_commands() -> list:
    """CLI subcommands of focusing-render."""
    return []
