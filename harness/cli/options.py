"""Options shared by several commands."""

from __future__ import annotations

import click

plugin_option = click.option(
    "--plugin",
    "plugins",
    multiple=True,
    metavar="VALUE",
    help="Load a plugin: a .py file, a package directory, an importable module or an "
    "entry-point name. Repeatable.",
)


def load_registry(plugins: tuple[str, ...]):
    """The registry with the built-ins, installed plugins and the ``--plugin`` values."""
    from harness.registry import Registry

    return Registry(plugins)
