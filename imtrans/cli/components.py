"""The ``imtrans list`` and ``imtrans plugins`` commands: what the loaded plugins registered.

Thin commands over :func:`imtrans.catalogue.plugins.components`, printed as plain-text tables.
"""

from __future__ import annotations

import click

from imtrans.catalogue.plugins import KINDS, components
from imtrans.cli.output import add_row, make_table, stdout_console

__all__ = ["list_components", "plugins"]


@click.command("list")
@click.argument("kind", required=False, type=click.Choice(list(KINDS)))
def list_components(kind: str | None) -> None:
    """List the registered components (of one KIND, or all)."""
    loaded = components()
    table = make_table("kind", "name", "source", "summary")
    for plural in [kind] if kind else list(KINDS):
        for entry in loaded.registry(plural).entries():
            add_row(table, KINDS[plural], entry.name, entry.source, entry.summary)
    stdout_console().print(table)


@click.command("plugins")
def plugins() -> None:
    """List the loaded plugins, their versions and what each registered."""
    table = make_table("plugin", "distribution", "version", "registered")
    for info in components().plugins:
        registered = "; ".join(f"{kind}: {', '.join(names)}"
                               for kind, names in info.registered.items())
        add_row(table, info.name, info.distribution, info.version, registered or "(nothing)")
    stdout_console().print(table)
