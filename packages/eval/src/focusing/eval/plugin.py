"""focusing-eval's registrations through the `focusing` entry point."""

from __future__ import annotations

from focusing.core.plugin_system import hookimpl
from focusing.eval.cli.evaluate import eval_command


@hookimpl
def focusing_commands() -> list:
    """CLI subcommands of focusing-eval: `eval` (metrics of meshes against ground truth)."""
    from focusing.eval.cli.compare import compare_command
    from focusing.eval.cli.fit import fit_command

    return [eval_command, fit_command, compare_command]
