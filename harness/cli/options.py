"""Options shared by several commands."""

from __future__ import annotations

import dataclasses

import click

from harness.config import RunConfig

_PLUGINS = next(f for f in dataclasses.fields(RunConfig) if f.name == "plugins")
plugin_option = click.option("--plugin", "plugins", multiple=True, metavar=_PLUGINS.metadata["metavar"],
                             help=_PLUGINS.metadata["help"])


def load_registry(plugins: tuple[str, ...]):
    """The registry with the built-ins, installed plugins and the ``--plugin`` values."""
    from harness.registry import Registry

    return Registry(plugins)
