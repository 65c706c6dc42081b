"""Settings given through the Python API checked for their types, as the CLI's options are.

``harness.run(size="big")`` or ``harness.run(cache="no")`` would otherwise reach the trainer
(a non-empty string is true) or fail deep inside it; each wrong setting is one ``UserError``
naming the argument, its value and the type it takes.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from harness.config import RunConfig
from harness.errors import UserError


def _accepts(hint: Any, value: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(option, value) for option in typing.get_args(hint))
    if origin is tuple:
        (item, *_) = typing.get_args(hint)
        return isinstance(value, (tuple, list)) and all(_accepts(item, v) for v in value)
    if hint is type(None):
        return value is None
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_name(option) for option in typing.get_args(hint))
    if origin is tuple:
        return f"a tuple of {_name(typing.get_args(hint)[0])}"
    return "None" if hint is type(None) else hint.__name__


def run_config(config: RunConfig | None, options: dict[str, Any]) -> RunConfig:
    """``config``, or a ``RunConfig`` of ``options``, with every setting of its declared type
    (a list of plugins becomes a tuple)."""
    if config is None:
        known = {f.name for f in dataclasses.fields(RunConfig)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise UserError(f"harness.run: unknown setting {unknown[0]!r}; the settings are {', '.join(sorted(known))}")
        if isinstance(options.get("plugins"), list):
            options = {**options, "plugins": tuple(options["plugins"])}
        config = RunConfig(**options)
    hints = typing.get_type_hints(RunConfig)
    for field in dataclasses.fields(RunConfig):
        value = getattr(config, field.name)
        if not _accepts(hints[field.name], value):
            raise UserError(f"harness.run: {field.name}={value!r} is {type(value).__name__}; give "
                            f"{_name(hints[field.name])}")
    return config
