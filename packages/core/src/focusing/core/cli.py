"""The `focusing` command line: core's own commands plus those every package registers.

User errors (a bad mesh, setting or path, a busy run folder) end as one `error: ...` line and
exit code 2; faults of the machine (a full disk, an I/O error) as one `error: ...` line and exit
code 1; a training stopped by Ctrl-C as one line and exit code 130 (143 for SIGTERM). A
traceback is for bugs, and shows for these too with `focusing --debug ...` or FOCUSING_DEBUG=1.
"""

from __future__ import annotations

import errno
import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from focusing.core.cli_support import debugging, set_debugging
from focusing.core.plugin_system import registry

app = typer.Typer(
    name="focusing",
    help="Train and compare 3D shape VAEs on sparse voxels (see `focusing plugins`).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


# Faults of the input, not of the program: ValueError covers MeshError, ConfigError and
# CompareError (and the checks that raise ValueError on a bad argument); OSError subclasses
# are the file-system faults of a path the user gave.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    registry.PluginError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
)


@app.callback()
def _root(
    debug: bool = typer.Option(
        False, "--debug", help="Show the Python traceback of an error (also FOCUSING_DEBUG=1)."),
) -> None:
    """Train and compare 3D shape VAEs on sparse voxels; `focusing plugins` lists the pieces."""
    set_debugging(debug)


@app.command("plugins")
def plugins_command(
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table."),
    kind: str = typer.Option(None, "--kind", help="Show one kind only."),
) -> None:
    """List every registered plugin: kind, name, distribution, version and availability."""
    entries = registry.all_entries()
    if kind:
        entries = [e for e in entries if e.kind == kind]
    rows = []
    for e in entries:
        ok, why = e.availability()
        rows.append(
            {
                "kind": e.kind,
                "name": e.name,
                "distribution": e.distribution,
                "version": e.version,
                "available": ok,
                "reason": why,
            }
        )
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="focusing plugins")
    for col in ("kind", "name", "distribution", "version", "available", "reason"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["kind"], r["name"], r["distribution"], r["version"],
            "[green]yes[/green]" if r["available"] else "[red]no[/red]", r["reason"],
        )
    Console().print(table)


_installed: set[str] = set()


def get_app() -> typer.Typer:
    """The `focusing` app with every plugin's subcommands installed (once)."""
    for entry in registry.get_registry("command").entries():
        if entry.name not in _installed:
            app.command(entry.name)(entry.obj)
            _installed.add(entry.name)
    return app


def error_message(exc: BaseException) -> str:
    """One line for a user error: the message, or for an OSError its reason and path."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        why = "no space left on device" if exc.errno == errno.ENOSPC else exc.strerror
        text = f"{why}: {str(exc.filename)!r}"
        if isinstance(exc, NotADirectoryError):  # name the file that stands in the way
            blocker = next((p for p in Path(exc.filename).parents if p.is_file()), None)
            if blocker is not None:
                text += f" ({str(blocker)!r} is a file, not a folder)"
        return text
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, LookupError) and text.startswith("'") and text.endswith("'"):
        text = text[1:-1]  # KeyError-style quoting
    return text


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `focusing` console script: exit 2 with `error: ...` on a user error."""
    set_debugging(False)
    try:
        get_app()(args=argv, standalone_mode=True)
    except USER_ERRORS as exc:
        if debugging():
            raise
        typer.echo(f"error: {error_message(exc)}", err=True)
        sys.exit(2)
    except OSError as exc:  # the machine's fault: a full disk, an I/O error, a lost mount
        if debugging():
            raise
        typer.echo(f"error: {error_message(exc)}", err=True)
        sys.exit(1)
    except BaseException as exc:  # a training stopped by Ctrl-C or SIGTERM (a command's own)
        loop = sys.modules.get("focusing.core.engine.loop")  # never loaded: not one of them
        if loop is None or not isinstance(exc, loop.TrainingInterrupted) or debugging():
            raise
        typer.echo(str(exc), err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    # `python -m focusing.core.cli`: run the imported module's main, so that the commands and
    # this entry point share one module state (the app and the commands installed on it).
    from focusing.core.cli import main as _main

    _main()
