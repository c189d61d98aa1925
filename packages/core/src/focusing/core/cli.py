"""The `focusing` command line: core's own commands plus those every package registers."""

from __future__ import annotations

import json
import sys

import typer
from rich.console import Console
from rich.table import Table

from focusing.core.plugins import registry

app = typer.Typer(
    name="focusing",
    help="Train and compare 3D shape VAEs on sparse voxels (see `focusing plugins`).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Train and compare 3D shape VAEs on sparse voxels; `focusing plugins` lists the pieces."""


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


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `focusing` console script."""
    try:
        get_app()(args=argv, standalone_mode=True)
    except registry.PluginError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
