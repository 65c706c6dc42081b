"""A stored submission (a *bundle*): what it holds, its hashes, reading it back (``store``
lists, finds and writes bundles).

Under ``leaderboards/submissions/`` (leaderboards/README.md describes the layout)::

    <dataset>/<protocol>/<run-id>--<id>.json           the bundle: result, run.json, log, sources
    <dataset>/<protocol>/<run-id>--<id>.scores.npz     test scores, labels and ids (packed_scores)
    <dataset>/<protocol>/<run-id>--<id>.verified.json  written by ``bench leaderboard reproduce``
    plugins/<sha256>.py, plugins/<sha256>/             code of file and package-folder plugins
                                                       (.py and LICENSE*/NOTICE*/COPYING* files)

``<id>`` is the first ``ID_LENGTH`` hex digits of the content hash: the sha256 of the
canonical JSON of the result, the resolved run, the per-epoch log, the scores, the sha256
of the submitted scores file, the canonical fingerprint the data was checked against and
the conversion of the scores when there was one (``scores_converted``), leaving out
timestamps, timings and the submitter's folders, so one run is one id however its JSON is
formatted. Every other stored field is derived from those and checked again
by ``build``. Bundles come from strangers (pull requests): the folder holds regular files
and folders only (no links, devices or pipes), each file read has a size limit, reading one
checks every key and type, and file names are made from the bundle's own file name and
hashes, never from its strings.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.config import ResolvedRun
from harness.errors import BadInput, UserError
from harness.leaderboard.packed_scores import LAYOUT, read_packed
from harness.naming import plain_name, sha256_json
from harness.results import RunRecord, fields_with_role
from harness.typed_json import load_json, parse_record
from harness.files import human_bytes

SUBMISSIONS = "submissions"
PLUGINS = "plugins"
BUNDLE_VERSION = 2
ID_LENGTH = 12
BUNDLE_NAME = re.compile(rf"(?P<run_id>.+)--(?P<id>[0-9a-f]{{{ID_LENGTH}}})\.json")
SHA256 = re.compile(r"[0-9a-f]{64}")
# Left out of the content hash: when and how fast a run went (its volatile fields), and where it lay.
VOLATILE_RESULT = fields_with_role("volatile")
VOLATILE_RUN = ("out", "data_root")
VOLATILE_LOG = ("seconds", "images_per_s")
# The most a stored file may hold, so that a hostile one cannot exhaust memory: a bundle is
# tens of kB (result, run, one log entry per epoch), a verification under one; the largest
# scores file, NUS-WIDE's 107,859 × 81 test scores with labels and ids, is about 60 MB.
MAX_BUNDLE_BYTES = 16 * 10**6
MAX_VERIFICATION_BYTES = 10**6
MAX_SCORES_BYTES = 500 * 10**6
SCORE_CONVERSIONS = (None, "probabilities")  # what submit --scores may have converted the scores from
PLUGIN_SOURCES = ("file", "directory", "module", "distribution", "built-in")
# A module or entry-point name: dotted identifiers (entry-point names may also hold '-').
IMPORT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*")


@dataclass(kw_only=True)
class EpochLog:
    """One entry of ``log.json``: the learning rates actually used in that epoch, and what the
    optimizer held at the epoch's first step (``harness.recipes.held``; absent in logs written
    before recipes)."""

    epoch: int
    lr: dict[str, float]
    loss: float
    seconds: float
    images_per_s: float
    optimizer: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The entry as ``log.json`` holds it (an absent ``optimizer`` stays absent)."""
        data = dataclasses.asdict(self)
        if data["optimizer"] is None:
            del data["optimizer"]
        return data


@dataclass(kw_only=True)
class StoredSource:
    """A file or directory plugin's code, stored under ``plugins/`` by its sha256."""

    kind: str
    sha256: str


@dataclass(kw_only=True)
class Verification:
    """What ``reproduce`` found when it trained a submission again (``<stem>.verified.json``):
    a claim by whoever ran it, bound to the bundle's content, result and scores by their hashes."""

    submission: str
    content_sha256: str
    result_sha256: str
    scores_sha256: str
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
    signature: str | None = None  # by a maintainer's SSH key over the rest (harness/leaderboard/signing.py)


@dataclass(kw_only=True)
class Bundle:
    """One stored submission; ``path`` is its JSON file (not stored). ``canonical_fingerprint``
    is the one the dataset declared when it was submitted (None: it declared none), ``data``
    what that made the run (``canonical`` or ``non-canonical``). ``scores_converted`` is
    ``probabilities`` when the run stored probabilities and ``submit --scores probabilities``
    stored their logits (``harness.metrics.from_probabilities``, as float32) and the metrics of
    those; ``reproduce`` converts the re-trained scores alike."""

    bundle_version: int = BUNDLE_VERSION
    id: str
    content_sha256: str
    submitted: str
    harness_version: str
    data: str
    canonical_fingerprint: str | None
    scores_layout: str
    scores_sha256: str
    submitted_scores_sha256: str
    result: dict[str, Any]
    run: dict[str, Any] | None
    log: list[EpochLog] | None
    sources: list[StoredSource] = field(default_factory=list)
    members: list[str] | None = None
    scores_converted: str | None = None  # "probabilities": submitted as probabilities, stored as their logits
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

    def scores(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The stored ``(scores, labels, ids)``, the file checked to be a regular file of bounded size."""
        return read_packed(regular_file(self.scores_path, "scores file", MAX_SCORES_BYTES))

    def content(self) -> str:
        """The content hash of what this bundle holds now (``content_sha256`` when unedited)."""
        log = None if self.log is None else [entry.to_dict() for entry in self.log]
        return content_sha256(result=self.result, run=self.run, log=log, scores_sha256=self.scores_sha256,
                              submitted_scores_sha256=self.submitted_scores_sha256,
                              canonical_fingerprint=self.canonical_fingerprint,
                              scores_converted=self.scores_converted)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        del data["path"]
        if self.log is not None:
            data["log"] = [entry.to_dict() for entry in self.log]
        return data


def arrays_sha256(scores: np.ndarray, labels: np.ndarray, ids) -> str:
    """sha256 of the scores (little-endian float32), labels (int8) and ids, with the shape."""
    digest = hashlib.sha256(f"{scores.shape[0]}x{scores.shape[1]}".encode())
    digest.update(np.ascontiguousarray(scores, dtype="<f4").tobytes())
    digest.update(np.ascontiguousarray(labels, dtype=np.int8).tobytes())
    digest.update("\x1e".join(str(i) for i in ids).encode())
    return digest.hexdigest()


def content_sha256(*, result: dict, run: dict | None, log: list[dict] | None, scores_sha256: str,
                   submitted_scores_sha256: str, canonical_fingerprint: str | None,
                   scores_converted: str | None = None) -> str:
    """The hash that names a submission: its metrics, scores, configuration, the submitted
    scores file's sha256, the canonical fingerprint it was checked against and how its scores
    were converted, without timestamps, timings or the submitter's folders. An unconverted
    submission hashes without the conversion key, as bundles written before it did."""
    converted = {} if scores_converted is None else {"scores_converted": scores_converted}
    return sha256_json({
        "result": {k: v for k, v in result.items() if k not in VOLATILE_RESULT},
        "run": None if run is None else {k: v for k, v in run.items() if k not in VOLATILE_RUN},
        "log": None if log is None else [{k: v for k, v in e.items() if k not in VOLATILE_LOG
                                          and not (k == "optimizer" and v is None)} for e in log],
        "scores": scores_sha256,
        "submitted_scores": submitted_scores_sha256,
        "canonical_fingerprint": canonical_fingerprint,
        **converted,
    })


def regular_file(path: Path, what: str, limit: int) -> Path:
    """``path`` when it is a regular file of at most ``limit`` bytes; a link, a device, a pipe
    or a larger file is refused in one line (a stored file is read whole)."""
    path = Path(path)
    try:
        status = os.lstat(path)
    except FileNotFoundError:
        raise UserError(f"{path}: no such {what}; restore it from version control") from None
    if stat.S_ISLNK(status.st_mode):
        raise BadInput(f"{path}: a symbolic link; a stored {what} is a regular file: replace the link with the file")
    if not stat.S_ISREG(status.st_mode):
        raise BadInput(f"{path}: not a regular file; a stored {what} is a regular file: remove it")
    if status.st_size > limit:
        raise BadInput(f"{path}: {human_bytes(status.st_size)}, more than the {human_bytes(limit)} a stored {what} "
                       "may hold; restore it from version control")
    return path


def check_tree(base: Path) -> None:
    """Every entry under ``base`` is a folder or a regular file: a link (to a file or a folder)
    or a device or pipe is refused in one line, before anything is read."""
    pending = [Path(base)]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                path = Path(entry.path)
                if entry.is_symlink():
                    raise BadInput(f"{path}: a symbolic link under {SUBMISSIONS}/, which holds regular files and "
                                   "folders only: replace the link with the file, or remove it")
                if entry.is_dir(follow_symlinks=False):
                    pending.append(path)
                elif not entry.is_file(follow_symlinks=False):
                    raise BadInput(f"{path}: not a regular file (a device, pipe or socket) under {SUBMISSIONS}/; remove it")


def check_plugin_values(run: ResolvedRun, where: str) -> None:
    """What ``run.json`` says of each plugin: a file or directory plugin carries a sha256 (its
    code is stored, and reproduce runs only that code); any other is named by a module or
    entry-point name, never by a path, which the registry would import as a file."""
    for index, source in enumerate(run.plugins):
        kind, key = source.plugin.source, f"{where}: plugins[{index}]"
        if kind not in PLUGIN_SOURCES:
            raise BadInput(f"{key}.plugin.source is {kind!r}; expected one of {', '.join(PLUGIN_SOURCES)}")
        if kind in ("file", "directory"):
            if not SHA256.fullmatch(str(source.plugin.sha256)):
                raise BadInput(f"{key}.plugin.sha256 is {source.plugin.sha256!r}; a {kind} plugin is recorded with the "
                               "sha256 of its code: submit the run folder as the harness wrote it")
        elif not IMPORT_NAME.fullmatch(source.value) or source.value.endswith(".py"):
            raise BadInput(f"{key}.value {source.value!r} is not a module or entry-point name (dotted identifiers), but "
                           f"its source is {kind!r}; a path is only ever a file or directory plugin, whose code a "
                           "submission stores: submit the run folder as the harness wrote it")


def read_bundle(path: Path) -> Bundle:
    """A stored bundle, every key and type checked, its id that of its file name."""
    path = Path(path)
    match = BUNDLE_NAME.fullmatch(path.name)
    if match is None:
        raise BadInput(f"{path}: not a submission file name (<run-id>--<{ID_LENGTH} hex digits>.json)")
    data = load_json(regular_file(path, "submission", MAX_BUNDLE_BYTES).read_bytes(), str(path))
    bundle = parse_record(Bundle, data, str(path))
    bundle.path = path
    if bundle.bundle_version != BUNDLE_VERSION:
        raise BadInput(f"{path}: bundle_version {bundle.bundle_version}; this harness reads version {BUNDLE_VERSION}: "
                       "submit the run again")
    if bundle.id != match["id"] or not bundle.content_sha256.startswith(bundle.id):
        raise BadInput(f"{path}: id {bundle.id!r} is not the start of content_sha256 and of the file name")
    if bundle.scores_layout != LAYOUT:
        raise BadInput(f"{path}: scores_layout {bundle.scores_layout!r}; this harness stores {LAYOUT!r}")
    if bundle.scores_converted not in SCORE_CONVERSIONS:
        raise BadInput(f"{path}: scores_converted {bundle.scores_converted!r}; expected null or "
                       f"{' or '.join(map(repr, SCORE_CONVERSIONS[1:]))}: restore it from version control")
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
    if resolved is not None:
        check_plugin_values(resolved, f"{path} (run)")
    return bundle


OUTCOMES = ("exact", "within tolerance")


def read_verification(bundle: Bundle) -> Verification | None:
    """The verification stored beside ``bundle``, checked to be about this very submission:
    its content, its whole result and its scores (by their hashes)."""
    path = bundle.verification_path
    if not os.path.lexists(path):
        return None
    data = load_json(regular_file(path, "verification", MAX_VERIFICATION_BYTES).read_bytes(), str(path))
    verification = parse_record(Verification, data, str(path))
    for name, recorded, expected in (("submission", verification.submission, bundle.id),
                                     ("content_sha256", verification.content_sha256, bundle.content_sha256),
                                     ("result_sha256", verification.result_sha256, sha256_json(bundle.result)),
                                     ("scores_sha256", verification.scores_sha256, bundle.scores_sha256)):
        if recorded != expected:
            raise BadInput(f"{path}: {name} {str(recorded)[:16]}… is not that of {bundle.path.name} "
                           f"({expected[:16]}…), so it verified something else; delete it and run "
                           "`bench leaderboard reproduce` again")
    if verification.outcome not in OUTCOMES:
        raise BadInput(f"{path}: outcome {verification.outcome!r} is not one of {', '.join(OUTCOMES)}; delete it and "
                       "run `bench leaderboard reproduce` again")
    return verification
