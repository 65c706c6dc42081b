"""Options shared by several commands."""

from __future__ import annotations

import dataclasses
import functools

import click

from harness.config import RunConfig

_FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}


def plugin_option(command):
    """``--plugin VALUE`` (passed to the command as ``plugins``) and ``--no-plugin NAME`` (kept
    for ``load_registry``), with the help of ``RunConfig``'s fields of the same meaning."""

    @functools.wraps(command)
    def callback(*args, no_plugins: tuple[str, ...], **kwargs):
        click.get_current_context().meta["no_plugins"] = no_plugins
        return command(*args, **kwargs)

    for name, flag in (("no_plugins", "--no-plugin"), ("plugins", "--plugin")):
        callback = click.option(flag, name, multiple=True, metavar=_FIELDS[name].metadata["metavar"],
                                help=_FIELDS[name].metadata["help"])(callback)
    return callback


def load_registry(plugins: tuple[str, ...]):
    """The registry with the built-ins, the installed plugins not switched off with
    ``--no-plugin``, and the ``--plugin`` values."""
    from harness.registry import Registry

    context = click.get_current_context(silent=True)
    return Registry(plugins, disabled=context.meta.get("no_plugins", ()) if context else ())
