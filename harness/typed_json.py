"""Typed JSON: strict parsing of files that may come from anyone into typed dataclasses, and back.

``load_json`` refuses NaN, Infinity and deep nesting; ``parse_record`` builds a dataclass from
JSON values checking every key and type (``int | None``, lists, nested records), and
``to_plain`` turns one back into JSON values. Every refusal is one ``BadInput`` line naming
the file and the dotted field. Records (``RunRecord``), run settings (``ResolvedRun``) and
stored submissions are all read through here.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from pathlib import Path
from typing import Any

from harness.errors import BadInput

MAX_JSON_DEPTH = 64


def load_json(text: str | bytes, where: str) -> Any:
    """Strict JSON from a file that may come from anyone: no NaN or Infinity, at most
    ``MAX_JSON_DEPTH`` levels of nesting; anything else is one ``BadInput`` line naming ``where``."""
    def refuse(constant: str):
        raise BadInput(f"{where}: {constant} is not a JSON number; numbers in a record are finite")

    try:
        data = json.loads(text, parse_constant=refuse)
    except RecursionError:
        raise BadInput(f"{where}: nested too deeply to be a record") from None
    except (ValueError, UnicodeDecodeError) as error:
        if isinstance(error, BadInput):
            raise
        raise BadInput(f"{where}: not valid JSON ({' '.join(str(error).split())})") from None
    if _depth(data) > MAX_JSON_DEPTH:
        raise BadInput(f"{where}: nested more than {MAX_JSON_DEPTH} levels deep; not a record")
    return data


def _depth(value: Any) -> int:
    """How deeply lists and objects nest in ``value``, without recursion."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            pending.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def to_plain(value: Any) -> Any:
    """A record (or any value of one) as JSON data; fields marked ``stored=False`` are left out."""
    if dataclasses.is_dataclass(value):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.metadata.get("stored", True)}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    return value


def _type_name(expected: Any) -> str:
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in typing.get_args(expected))
    if expected is type(None):
        return "null"
    if origin is not None:
        return {list: "list", tuple: "list", dict: "object"}.get(origin, str(origin))
    return {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object"}.get(
        expected, getattr(expected, "__name__", str(expected))
    )


def _parse(expected: Any, value: Any, where: str, key: str = "") -> Any:
    """``value`` checked against the annotation ``expected``; dataclasses built recursively.

    ``where`` names the file and ``key`` the dotted field, for one-line refusals such as
    ``result.json: 'dataset.fingerprint' is an integer, expected string``.
    """
    origin = typing.get_origin(expected)
    if expected is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(expected):
            try:
                return _parse(option, value, where, key)
            except BadInput:
                continue
        raise _mismatch(value, expected, where, key)
    if dataclasses.is_dataclass(expected):
        if not isinstance(value, dict):
            raise _mismatch(value, expected, where, key)
        hints, stored = _fields_of(expected)
        unknown = sorted(set(value) - set(stored))
        if unknown:
            raise BadInput(f"{where}: unknown key {_join(key, unknown[0])!r}")
        arguments = {}
        for name, spec in stored.items():
            if name in value:
                arguments[name] = _parse(hints[name], value[name], where, _join(key, name))
            elif spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                raise BadInput(f"{where}: required key {_join(key, name)!r} is missing")
        return expected(**arguments)
    if origin is list:
        if not isinstance(value, list):
            raise _mismatch(value, expected, where, key)
        (item,) = typing.get_args(expected) or (Any,)
        return [_parse(item, v, where, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:  # tuple[X, ...], as a JSON or TOML list
        if not isinstance(value, (list, tuple)):
            raise _mismatch(value, expected, where, key)
        (item, *_) = typing.get_args(expected) or (Any,)
        return tuple(_parse(item, v, where, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict or expected is dict:
        if not isinstance(value, dict):
            raise _mismatch(value, expected, where, key)
        args = typing.get_args(expected)
        item = args[1] if len(args) == 2 else Any
        return {k: _parse(item, v, where, _join(key, k)) for k, v in value.items()}
    if expected is type(None):
        accepted = value is None
    elif expected is float:
        accepted = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if accepted else value
    elif expected is int:
        accepted = isinstance(value, int) and not isinstance(value, bool)
    else:
        accepted = isinstance(value, expected)
    if not accepted:
        raise _mismatch(value, expected, where, key)
    return value


@functools.lru_cache(maxsize=None)
def _fields_of(cls: type) -> tuple[dict[str, Any], dict[str, dataclasses.Field]]:
    """A record class's resolved annotations and its stored fields (resolved once per class)."""
    stored = {f.name: f for f in dataclasses.fields(cls) if f.metadata.get("stored", True)}
    return typing.get_type_hints(cls), stored


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _mismatch(value: Any, expected: Any, where: str, key: str) -> BadInput:
    return BadInput(f"{where}: {key or 'the record'!r} is {_json_type(value)}, expected {_type_name(expected)}")


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def parse_record(cls: type, data: Any, where: str) -> Any:
    """``data`` (JSON values) as an instance of the dataclass ``cls``, every key and type checked;
    refusals are one ``BadInput`` line naming ``where`` and the field."""
    return _parse(cls, data, where)


def parse_value(annotation: Any, value: Any, where: str, key: str) -> Any:
    """One value checked against a type annotation (``int | None``), refusals naming ``key``."""
    return _parse(annotation, value, where, key)
