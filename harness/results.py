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

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import __version__
from harness.errors import BadInput, UserError
from harness.typed_json import load_json, parse_record, to_plain

if TYPE_CHECKING:
    from harness.config import ResolvedRun

SCHEMA_VERSION = 2
RESULT_FILE = "result.json"
KINDS = ("train", "fusion")


@dataclass(kw_only=True)
class PluginRecord:
    """Where a plugin came from: ``source`` is built-in, distribution, file, directory or module,
    or ``imported`` for a module plugin code imported from beside itself (``Registry.imported_modules``);
    ``sha256`` hashes its code (the file, or the ``.py`` and license files of its package)."""

    name: str
    source: str
    distribution: str | None = None
    distribution_version: str | None = None
    path: str | None = None
    sha256: str | None = None


@dataclass(kw_only=True)
class ComponentRecord:
    """A component used by a run: its name, version and the plugin that provided it, and what
    its spec declares (harness/declared.py): ``params`` (JSON values) and ``upstream``."""

    name: str
    version: str
    plugin: PluginRecord
    params: dict[str, Any] = field(default_factory=dict)
    upstream: str | None = None


@dataclass(kw_only=True)
class RecipeRecord(ComponentRecord):
    """The recipe trained with: the optimizer and scheduler classes it made, the steps per
    epoch its schedule was told, and its EMA decay (when set, the test split was scored with
    the EMA weights)."""

    optimizer: str
    scheduler: str | None
    steps_per_epoch: int
    ema_decay: float | None = None


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
    # The input normalisation the core applied, (x − mean) / std; records written before it
    # was recorded used ImageNet's, as every model then did.
    normalization: dict[str, list[float]] = field(
        default_factory=lambda: {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]})
    paper: str | None = None
    code: str | None = None


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


ROLES = ("identity", "configuration", "volatile", "machine")


def _role(role: str, *, fact: bool = False, **options: Any) -> Any:
    """A ``RunRecord`` field of ``role`` (see ``RunRecord``); ``fact`` marks a training fact."""
    return field(metadata={"role": role, "training_fact": fact}, **options)


@dataclass(kw_only=True)
class RunRecord:
    """One finished run (``result.json``). ``path`` is the run folder, when known (not stored).

    Every stored field has one role (``metadata["role"]``), from which the lists of fields
    that consumers treat alike are derived (``fields_with_role``):

    - ``identity``: what the record is and what it found (its id, kind, layout, metrics);
    - ``configuration``: what was trained, on what data, under which rules and how (the
      ``training_fact`` ones describe one trained model: a fusion keeps those its members share);
    - ``volatile``: when and how fast it ran, which training again never repeats;
    - ``machine``: the harness, the plugins installed and the machine it ran with.
    """

    schema_version: int = _role("identity", default=SCHEMA_VERSION)
    run_id: str = _role("identity")
    kind: str = _role("identity")
    created: str = _role("volatile")
    harness_version: str = _role("machine", default=__version__)
    metrics_version: int = _role("identity")
    metrics: dict[str, Any] = _role("identity")
    dataset: DatasetRecord = _role("configuration")
    protocol: ProtocolRecord = _role("configuration")
    model: ModelRecord | None = _role("configuration", fact=True, default=None)
    augmentation: ComponentRecord | None = _role("configuration", fact=True, default=None)
    loss: ComponentRecord | None = _role("configuration", fact=True, default=None)
    size: int | None = _role("configuration", fact=True, default=None)
    seed: int | None = _role("configuration", fact=True, default=None)
    device: str | None = _role("configuration", fact=True, default=None)
    gpu: str | None = _role("configuration", fact=True, default=None)
    world_size: int | None = _role("configuration", fact=True, default=None)
    precision: str | None = _role("configuration", fact=True, default=None)
    tf32: bool | None = _role("configuration", fact=True, default=None)
    pipeline: dict[str, Any] = _role("configuration", default_factory=dict)
    plugins: list[PluginRecord] = _role("machine", default_factory=list)
    fusion: FusionRecord | None = _role("configuration", default=None)
    members: list[MemberRecord] | None = _role("configuration", default=None)
    environment: dict[str, Any] = _role("machine", default_factory=dict)
    wall_time_s: float | None = _role("volatile", default=None)
    train_images_per_s: float | None = _role("volatile", default=None)
    eval_images_per_s: float | None = _role("volatile", default=None)
    recipe: RecipeRecord | None = _role("configuration", default=None)  # absent in records written before recipes: sgd-step
    path: Path | None = field(default=None, compare=False, repr=False, metadata={"stored": False})

    @classmethod
    def for_training(cls, run: "ResolvedRun", *, metrics: dict[str, Any], dataset: DatasetRecord, model: ModelRecord,
                     augmentation: ComponentRecord, loss: ComponentRecord, recipe: RecipeRecord,
                     deviations: dict[str, dict[str, Any]], gpu: str | None, world_size: int, pipeline: dict[str, Any],
                     plugins: list[PluginRecord], wall_time_s: float, train_images_per_s: float,
                     eval_images_per_s: float) -> "RunRecord":
        """The record of one trained model: ``run`` (its device and precision chosen,
        ``ResolvedRun.with_device``) gives the id, protocol, size, seed, device and precision;
        the rest is what training built and measured."""
        from harness.machine import environment
        from harness.metrics import METRICS_VERSION

        return cls(
            run_id=run.run_id, kind="train", created=_now(), metrics_version=METRICS_VERSION, metrics=metrics,
            dataset=dataset,
            protocol=ProtocolRecord(name=run.protocol, version=run.base_protocol.version, hash=run.protocol_hash,
                                    deviations=deviations),
            model=model, augmentation=augmentation, loss=loss, size=run.size, seed=run.seed,
            device=run.chosen_device, gpu=gpu, world_size=world_size, precision=run.chosen_precision, tf32=run.tf32,
            pipeline=pipeline, plugins=plugins, environment=environment(), wall_time_s=wall_time_s,
            train_images_per_s=train_images_per_s, eval_images_per_s=eval_images_per_s, recipe=recipe,
        )

    @classmethod
    def for_fusion(cls, members: Sequence["RunRecord"], *, run_id: str, metrics: dict[str, Any], fusion: FusionRecord,
                   member_records: list[MemberRecord], wall_time_s: float) -> "RunRecord":
        """The record of a score-level ensemble of ``members`` (scored on the same data under
        the same protocol): their dataset and protocol, the training facts they all share (else
        null), every plugin any of them or the fusion loaded."""
        from harness.machine import environment
        from harness.metrics import METRICS_VERSION

        shared = {name: _common([getattr(m, name) for m in members]) for name in TRAINING_FACTS}
        plugins = {repr(p): p for m in members for p in m.plugins}
        plugins[repr(fusion.plugin)] = fusion.plugin
        return cls(
            run_id=run_id, kind="fusion", created=_now(), metrics_version=METRICS_VERSION, metrics=metrics,
            dataset=members[0].dataset, protocol=members[0].protocol, **shared, plugins=list(plugins.values()),
            fusion=fusion, members=member_records, environment=environment(), wall_time_s=wall_time_s,
        )

    def __repr__(self) -> str:
        """One line: the run id, mAP, what trained, the dataset, the protocol and its deviations, the folder."""
        from harness.notebook import record_line

        return record_line(self)

    def _repr_html_(self) -> str:
        """A notebook's view: what trained, under which protocol, and the paper's metric columns."""
        from harness.notebook import record_html

        return record_html(self)

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)

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
        record = parse_record(cls, data, where)
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
            for name in (n for n in TRAINING_FACTS if n != "gpu"):  # gpu is null on a CPU
                if getattr(self, name) is None:
                    raise BadInput(f"{where}: a train record needs {name!r}")
        elif self.fusion is None or not self.members or len(self.members) < 2:
            raise BadInput(f"{where}: a fusion record needs 'fusion' and at least two 'members'")


def fields_with_role(*roles: str) -> tuple[str, ...]:
    """The stored ``RunRecord`` fields of ``roles``, role by role, each in the record's order."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown role {sorted(unknown)[0]!r}; the roles are {', '.join(ROLES)}")
    return tuple(f.name for role in roles for f in fields(RunRecord) if f.metadata.get("role") == role)


# What one trained model is: a train record must have them (but gpu, null on a CPU); a fusion
# record keeps those its members share.
TRAINING_FACTS = tuple(f.name for f in fields(RunRecord) if f.metadata.get("training_fact"))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _common(values: list[Any]) -> Any:
    return values[0] if all(v == values[0] for v in values) else None


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
