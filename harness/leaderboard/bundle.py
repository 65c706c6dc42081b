"""A stored submission (a *bundle*): what it holds, where its files lie, reading it back.

Under ``leaderboards/submissions/`` (leaderboards/README.md describes the layout)::

    <dataset>/<protocol>/<run-id>--<id>.json           the bundle: result, run.json, log, sources
    <dataset>/<protocol>/<run-id>--<id>.scores.npz     test scores, labels and ids (packed_scores)
    <dataset>/<protocol>/<run-id>--<id>.verified.json  written by ``bench leaderboard reproduce``
    plugins/<sha256>.py, plugins/<sha256>/             code of file and directory plugins

``<id>`` is the first 12 hex digits of the content hash: the sha256 of the canonical JSON of
the result, the resolved run, the per-epoch log and the scores, leaving out timestamps,
timings and the submitter's folders, so one run is one id however its JSON is formatted.
Bundles come from strangers (pull requests): reading one checks every key and type, and
file names are made from the bundle's own file name and hashes, never from its strings.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.config import ResolvedRun
from harness.errors import BadInput, UserError
from harness.naming import plain_name, sha256_json, sha256_of, sha256_of_files
from harness.results import RunRecord, parse_record
from harness.rundir import atomic_write, write_json

SUBMISSIONS = "submissions"
PLUGINS = "plugins"
BUNDLE_VERSION = 1
ID_LENGTH = 12
BUNDLE_NAME = re.compile(r"(?P<run_id>.+)--(?P<id>[0-9a-f]{12})\.json")
SHA256 = re.compile(r"[0-9a-f]{64}")
# Left out of the content hash: when and how fast a run went, and where it lay.
VOLATILE_RESULT = ("created", "wall_time_s", "train_images_per_s", "eval_images_per_s")
VOLATILE_RUN = ("out", "data_root")
VOLATILE_LOG = ("seconds", "images_per_s")


@dataclass(kw_only=True)
class EpochLog:
    """One entry of ``log.json``: the learning rates actually used in that epoch."""

    epoch: int
    lr: dict[str, float]
    loss: float
    seconds: float
    images_per_s: float


@dataclass(kw_only=True)
class StoredSource:
    """A file or directory plugin's code, stored under ``plugins/`` by its sha256."""

    kind: str
    sha256: str


@dataclass(kw_only=True)
class Verification:
    """What ``reproduce`` found when it trained a submission again (``<stem>.verified.json``)."""

    submission: str
    content_sha256: str
    verified: str
    outcome: str
    largest_difference: float
    at: dict[str, str] | None
    tolerance: dict[str, float] | None
    harness_version: str
    git_commit: str | None
    hardware: dict[str, Any]
    versions: dict[str, str]
    seconds: float
    code_changed: list[str]


@dataclass(kw_only=True)
class Bundle:
    """One stored submission; ``path`` is its JSON file (not stored)."""

    bundle_version: int = BUNDLE_VERSION
    id: str
    content_sha256: str
    submitted: str
    harness_version: str
    data: str
    scores_layout: str
    scores_sha256: str
    submitted_scores_sha256: str
    result: dict[str, Any]
    run: dict[str, Any] | None
    log: list[EpochLog] | None
    sources: list[StoredSource] = field(default_factory=list)
    members: list[str] | None = None
    path: Path | None = field(default=None, compare=False, repr=False, metadata={"stored": False})

    @functools.cached_property
    def record(self) -> RunRecord:
        return RunRecord.from_json(self.result, f"{self.path} (result)")

    @functools.cached_property
    def resolved(self) -> ResolvedRun | None:
        return None if self.run is None else ResolvedRun.from_dict(self.run, f"{self.path} (run)")

    @property
    def stem(self) -> str:
        return self.path.name[: -len(".json")]

    @property
    def scores_path(self) -> Path:
        return self.path.with_name(f"{self.stem}.scores.npz")

    @property
    def verification_path(self) -> Path:
        return self.path.with_name(f"{self.stem}.verified.json")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.metadata.get("stored", True)}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def arrays_sha256(scores: np.ndarray, labels: np.ndarray, ids) -> str:
    """sha256 of the scores (little-endian float32), labels (int8) and ids, with the shape."""
    digest = hashlib.sha256(f"{scores.shape[0]}x{scores.shape[1]}".encode())
    digest.update(np.ascontiguousarray(scores, dtype="<f4").tobytes())
    digest.update(np.ascontiguousarray(labels, dtype=np.int8).tobytes())
    digest.update("\x1e".join(str(i) for i in ids).encode())
    return digest.hexdigest()


def content_sha256(result: dict, run: dict | None, log: list[dict] | None, scores_sha256: str) -> str:
    """The hash that names a submission: its metrics, scores and configuration, without
    timestamps, timings or the submitter's folders."""
    return sha256_json({
        "result": {k: v for k, v in result.items() if k not in VOLATILE_RESULT},
        "run": None if run is None else {k: v for k, v in run.items() if k not in VOLATILE_RUN},
        "log": None if log is None else [{k: v for k, v in e.items() if k not in VOLATILE_LOG} for e in log],
        "scores": scores_sha256,
    })


def read_bundle(path: Path) -> Bundle:
    """A stored bundle, every key and type checked, its id that of its file name."""
    path = Path(path)
    match = BUNDLE_NAME.fullmatch(path.name)
    if match is None:
        raise BadInput(f"{path}: not a submission file name (<run-id>--<12 hex digits>.json)")
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise UserError(f"{path}: no such submission") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise BadInput(f"{path}: invalid JSON ({' '.join(str(error).split())}); restore it from version control") from None
    bundle = parse_record(Bundle, data, str(path))
    bundle.path = path
    if bundle.bundle_version != BUNDLE_VERSION:
        raise BadInput(f"{path}: bundle_version {bundle.bundle_version}; this harness reads version {BUNDLE_VERSION}")
    if bundle.id != match["id"] or not bundle.content_sha256.startswith(bundle.id):
        raise BadInput(f"{path}: id {bundle.id!r} is not the start of content_sha256 and of the file name")
    for source in bundle.sources:
        if source.kind not in ("file", "directory") or not SHA256.fullmatch(source.sha256):
            raise BadInput(f"{path}: sources holds {source.kind!r} {source.sha256!r}; expected file or directory and a sha256")
    record = bundle.record
    resolved = bundle.resolved
    if match["run_id"] != plain_name(record.run_id, f"{path}: result.run_id"):
        raise BadInput(f"{path}: the file name's run id {match['run_id']!r} is not result.run_id {record.run_id!r}")
    fusion = record.kind == "fusion"
    if (resolved is None) != fusion or (bundle.log is None) != fusion or bool(bundle.members) != fusion:
        needs = "members and no run or log" if fusion else "a run and a log and no members"
        raise BadInput(f"{path}: a {record.kind} submission has {needs}")
    return bundle


OUTCOMES = ("exact", "within tolerance")


def read_verification(bundle: Bundle) -> Verification | None:
    """The verification stored beside ``bundle``, checked to be about this very submission."""
    path = bundle.verification_path
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as error:
        raise BadInput(f"{path}: invalid JSON ({' '.join(str(error).split())}); delete it and run reproduce again") from None
    verification = parse_record(Verification, data, str(path))
    if verification.content_sha256 != bundle.content_sha256 or verification.outcome not in OUTCOMES:
        raise BadInput(f"{path}: is not a verification of {bundle.path.name} (content_sha256 or outcome differ); "
                       "delete it and run `bench leaderboard reproduce` again")
    return verification


def submission_folder(root: Path, record: RunRecord, where: str) -> Path:
    """``root/submissions/<dataset>/<protocol>``, both names checked to be plain."""
    return (Path(root) / SUBMISSIONS / plain_name(record.dataset.name, f"{where}: dataset.name")
            / plain_name(record.protocol.name, f"{where}: protocol.name"))


def stored_bundles(root: Path) -> list[Bundle]:
    """Every stored bundle under ``root/submissions``, in file-name order."""
    base = Path(root) / SUBMISSIONS
    return [read_bundle(p) for p in sorted(base.glob("*/*/*.json")) if BUNDLE_NAME.fullmatch(p.name)]


def find_bundle(root: Path, value: str) -> Bundle:
    """The stored submission named by ``value``: its file (under ``root/submissions``), its
    id, or ``<run-id>--<id>``."""
    base = (Path(root) / SUBMISSIONS).resolve()
    candidate = Path(value).expanduser()
    if candidate.suffix == ".json" and candidate.is_file():
        if base not in candidate.resolve().parents:
            raise UserError(f"{value}: not a submission under {base}; pass --leaderboards with the folder that holds it")
        return read_bundle(candidate.resolve())
    found = [b for b in stored_bundles(root) if value in (b.id, b.stem)]
    if not found:
        raise UserError(f"no stored submission {value!r} under {base}; give a submission file or its 12-digit id")
    return found[0]


def source_path(root: Path, source: StoredSource) -> Path:
    """Where the code of a stored plugin lies."""
    base = Path(root) / SUBMISSIONS / PLUGINS
    return base / (f"{source.sha256}.py" if source.kind == "file" else source.sha256)


def code_sha256(path: Path, kind: str) -> str | None:
    """The sha256 the registry records for a file plugin or a package directory; None if absent."""
    if kind == "file":
        return sha256_of(path) if path.is_file() else None
    return sha256_of_files(path.rglob("*.py"), path) if path.is_dir() else None


def store_source(root: Path, source: StoredSource, original: Path) -> None:
    """Copy a plugin's code into ``plugins/`` unless that content is already there."""
    target = source_path(root, source)
    if code_sha256(target, source.kind) == source.sha256:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.kind == "file":
        data = original.read_bytes()
        atomic_write(target, lambda stream: stream.write(data))
        return
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{source.sha256}."))
    try:
        for file in sorted(original.rglob("*.py")):
            relative = file.relative_to(original)
            for part in relative.parts:
                plain_name(part, f"plugin {original}: file")
            (staging / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, staging / relative)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_bundle(path: Path, bundle: Bundle) -> None:
    write_json(path, bundle.to_dict())
