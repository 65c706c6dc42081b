"""The result record: what ``result.json`` holds, as one typed ``RunRecord``.

Every producer (the trainer, ``bench fuse``, test helpers that fake a run) builds a
``RunRecord`` and writes it with ``to_json``; every consumer (leaderboards, ``bench
compare``, ``reproduce``) reads it with ``from_json``, which checks every key and type and
refuses anything else in one line naming the file and the field. ``SCHEMA_VERSION``
changes whenever the layout does; reading an older record is explicit (``upgrade=True``),
so no consumer meets an old layout by accident.

Kinds: ``train`` (one trained model: model, augmentation, loss, size, seed, hardware) and
``fusion`` (a score-level ensemble: the fusion and its members).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import json
import platform
import subprocess
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import __version__
from harness.errors import BadInput, UserError

SCHEMA_VERSION = 2
RESULT_FILE = "result.json"
KINDS = ("train", "fusion")


@dataclass(kw_only=True)
class PluginRecord:
    """Where a plugin came from: ``source`` is built-in, distribution, file, directory or module;
    ``sha256`` hashes its code (the file, or every ``.py`` file of its package)."""

    name: str
    source: str
    distribution: str | None = None
    distribution_version: str | None = None
    path: str | None = None
    sha256: str | None = None


@dataclass(kw_only=True)
class ComponentRecord:
    """A component used by a run: its name, version and the plugin that provided it."""

    name: str
    version: str
    plugin: PluginRecord


@dataclass(kw_only=True)
class WeightsFile:
    """A pretrained-weights file a model build loaded."""

    file: str
    expected_name: str
    sha256: str
    matches_published: bool


@dataclass(kw_only=True)
class Pretrained:
    """``mode``: imagenet, none or file (``--pretrained PATH``); ``files``: what was loaded."""

    mode: str
    files: list[WeightsFile] = field(default_factory=list)


@dataclass(kw_only=True)
class ModelRecord(ComponentRecord):
    """The model: ``backbone`` is the baseline architecture it builds on (``ModelSpec.backbone``);
    ``context`` lists what ``build`` was given besides the class count (``train_labels``...)."""

    pretrained: Pretrained
    head_prefixes: list[str]
    backbone: str | None = None
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class FusionRecord(ComponentRecord):
    """The fusion method and the ensemble's label (``ScaleEn``)."""

    label: str


@dataclass(kw_only=True)
class MemberRecord:
    """One run fused into an ensemble; ``path`` is relative to the fused run folder."""

    run_id: str
    path: str
    kind: str
    model: str | None
    augmentation: str | None
    size: int | None
    seed: int | None
    scores_sha256: str


@dataclass(kw_only=True)
class DatasetRecord:
    """The data a run saw: ``fingerprint`` = H(classes, ``train_hash``, test-split hash)
    (``harness.data``), so the test labels in ``scores.npz`` can be checked against it."""

    name: str
    version: str
    plugin: PluginRecord
    fingerprint: str
    train_hash: str | None
    classes: list[str]
    n_train: int
    n_test: int
    coverage: float


@dataclass(kw_only=True)
class ProtocolRecord:
    """The protocol's name, version and hash, and every field the run changed:
    ``deviations[field] = {"protocol": value, "used": value, ...}``."""

    name: str
    version: int
    hash: str
    deviations: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(kw_only=True)
class RunRecord:
    """One finished run (``result.json``). ``path`` is the run folder, when known (not stored)."""

    schema_version: int = SCHEMA_VERSION
    run_id: str
    kind: str
    created: str
    harness_version: str = __version__
    metrics_version: int
    metrics: dict[str, Any]
    dataset: DatasetRecord
    protocol: ProtocolRecord
    model: ModelRecord | None = None
    augmentation: ComponentRecord | None = None
    loss: ComponentRecord | None = None
    size: int | None = None
    seed: int | None = None
    device: str | None = None
    gpu: str | None = None
    world_size: int | None = None
    precision: str | None = None
    tf32: bool | None = None
    pipeline: dict[str, Any] = field(default_factory=dict)
    plugins: list[PluginRecord] = field(default_factory=list)
    fusion: FusionRecord | None = None
    members: list[MemberRecord] | None = None
    environment: dict[str, Any] = field(default_factory=dict)
    wall_time_s: float | None = None
    train_images_per_s: float | None = None
    eval_images_per_s: float | None = None
    path: Path | None = field(default=None, compare=False, repr=False, metadata={"stored": False})

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.metadata.get("stored", True)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_json(cls, data: str | bytes | dict, where: str = RESULT_FILE, *, upgrade: bool = False) -> "RunRecord":
        """Parse and check a record; ``upgrade=True`` also reads older schema versions."""
        if not isinstance(data, dict):
            data = load_json(data, where)
        if not isinstance(data, dict):
            raise BadInput(f"{where}: expected a JSON object")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            if upgrade and version == 1:
                data = _upgrade_from_v1(data)
            else:
                hint = " (an older harness wrote it: train the run again)" if version == 1 else ""
                raise BadInput(f"{where}: schema_version {version!r}; this harness reads version {SCHEMA_VERSION}{hint}")
        record = _parse(cls, data, where)
        record._check_kind(where)
        return record

    @classmethod
    def read(cls, run_dir: Path, *, upgrade: bool = False) -> "RunRecord":
        """The record of a finished run folder, with ``path`` set."""
        path = Path(run_dir) / RESULT_FILE
        if not path.is_file():
            raise UserError(f"{run_dir}: no {RESULT_FILE}; is it a finished run folder?")
        record = cls.from_json(path.read_bytes(), str(path), upgrade=upgrade)
        record.path = Path(run_dir)
        return record

    def _check_kind(self, where: str) -> None:
        if self.kind not in KINDS:
            raise BadInput(f"{where}: kind {self.kind!r}; expected one of {', '.join(KINDS)}")
        if self.kind == "train":
            for name in ("model", "augmentation", "loss", "size", "seed", "device", "world_size", "precision", "tf32"):
                if getattr(self, name) is None:
                    raise BadInput(f"{where}: a train record needs {name!r}")
        elif self.fusion is None or not self.members or len(self.members) < 2:
            raise BadInput(f"{where}: a fusion record needs 'fusion' and at least two 'members'")



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


def _plain(value: Any) -> Any:
    """A record value as JSON data."""
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.metadata.get("stored", True)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
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
        return {list: "list", dict: "object"}.get(origin, str(origin))
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


def _upgrade_from_v1(data: dict) -> dict:
    """A schema-1 record (harness 0.1) in the schema-2 layout. Facts version 1 did not record
    stay unknown: ``train_hash`` is null (so the test labels cannot be proven), ``plugins``
    is empty; the loss was always the built-in ``bce``."""
    record = json.loads(json.dumps(data))
    record["schema_version"] = SCHEMA_VERSION
    record.setdefault("harness_version", record.get("environment", {}).get("versions", {}).get("harness", "0.1.0"))
    dataset = record.get("dataset", {})
    dataset.setdefault("train_hash", None)
    dataset.setdefault("version", "1")
    if record.get("kind") == "train":
        record.setdefault("loss", {"name": "bce", "version": "1",
                                   "plugin": {"name": "plugins.losses", "source": "built-in"}})
        model = record.get("model") or {}
        model.setdefault("head_prefixes", [])
    for key in ("plugins", "pipeline"):
        record.setdefault(key, [] if key == "plugins" else {"version": "1"})
    return record


def git_commit() -> str | None:
    """The commit of the harness source tree, when it is a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, Any]:
    """Library versions, the machine and torch's thread count, for every result record
    (``reproduce`` trains with the same thread count: CPU sums depend on how work is split)."""
    import numpy as np
    import torch
    import torchvision

    versions = {
        "harness": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
    }
    try:  # the installed version, without importing timm (half a second) in runs that use no timm model
        versions["timm"] = importlib.metadata.version("timm")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - timm is a dependency
        pass
    return {
        "versions": versions,
        "git_commit": git_commit(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def parse_record(cls: type, data: Any, where: str) -> Any:
    """``data`` (JSON values) as an instance of the dataclass ``cls``, every key and type checked;
    refusals are one ``BadInput`` line naming ``where`` and the field."""
    return _parse(cls, data, where)


def parse_value(annotation: Any, value: Any, where: str, key: str) -> Any:
    """One value checked against a type annotation (``int | None``), refusals naming ``key``."""
    return _parse(annotation, value, where, key)
