"""focusing-eval's registrations through the `focusing` entry point."""

from __future__ import annotations

from focusing.core.plugins import hookimpl
from focusing.eval.eval_cli import eval_command


@hookimpl
def focusing_commands() -> list:
    """CLI subcommands of focusing-eval: `eval` (metrics of meshes against ground truth)."""
    from focusing.eval.compare_cli import compare_command
    from focusing.eval.fit_cli import fit_command

    return [eval_command, fit_command, compare_command]
