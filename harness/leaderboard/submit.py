"""``bench leaderboard submit``: validate a finished run folder and store it as a bundle.

A trained run is accepted when every check of ``checks`` passes (run in the order
``submission_check.check_submission`` gives, as ``build`` runs them): the schema, plain names,
ranges, the protocol's hash, metrics re-scored from its scores, the dataset fingerprint
proven from the test ids and labels (equal to the dataset's canonical one where it declares
one), the result consistent with ``run.json``, deviations recomputed from ``run.json``, the
log and the weights recorded, and every plugin either a file or folder whose code still has
the recorded sha256 (it is stored) or a module or entry-point name, never a path; a module
imported from beside a plugin (``imported`` in ``plugins``) is refused, as no bundle holds it. A fusion
is accepted when its members are different stored trained submissions, described as they
are stored, and fusing their stored scores gives its scores exactly (``members``). Then,
under a lock, the stored submissions are checked as ``build`` checks them (only those new or
changed since this machine's record of checked ones: ``checked_record``), and a submission
whose content or whose scores are already stored, or a second run of a stored configuration
and seed, is refused; otherwise the bundle, its scores and
the code of its file and directory plugins are written, all under ``root`` and nowhere
else. Nothing the run folder holds is imported or unpickled.

A trained run that stored probabilities (a model ending in a sigmoid) is submitted with
``score_kind="probabilities"`` (``--scores probabilities``): once its metrics are shown to be
those of its scores as stored, the scores are converted to logits
(``harness.metrics.from_probabilities``, stored as float32), the result's metrics re-scored
from them, and the bundle records ``scores_converted``.
"""

from __future__ import annotations

import dataclasses
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from harness import __version__
from harness.config import ResolvedRun
from harness.errors import UserError
from harness.leaderboard import checks
from harness.leaderboard.bundle import (
    ID_LENGTH,
    SUBMISSIONS,
    Bundle,
    EpochLog,
    StoredSource,
    arrays_sha256,
    check_plugin_values,
)
from harness.leaderboard.checked_record import Checked, checked_submissions
from harness.leaderboard.checks import Where
from harness.leaderboard.members import find_members
from harness.leaderboard.packed_scores import LAYOUT, write_packed
from harness.leaderboard.rows import configuration, seed_label
from harness.leaderboard.store import store_source, stored_bundles, submission_folder, write_bundle
from harness.leaderboard.submission_check import Submission, check_submission
from harness.metrics import evaluate, from_probabilities
from harness.naming import code_sha256, sha256_of
from harness.progress import log as progress_log
from harness.results import RESULT_FILE, RunRecord
from harness.splits import check_submitted_split
from harness.typed_json import parse_value
from harness.files import read_json
from harness.rundir import LOG_FILE, RUN_FILE, SCORES_FILE, read_scores


def where_in(run_dir: Path) -> Where:
    return Where(*(str(Path(run_dir) / name) for name in (RESULT_FILE, SCORES_FILE, RUN_FILE, LOG_FILE)))


def read_log(path: Path) -> list[EpochLog]:
    return parse_value(list[EpochLog], read_json(path, "log"), str(path), "the log")


def _plugin_sources(run: ResolvedRun, where: Where) -> list[tuple[StoredSource, Path]]:
    """The code of every file and directory plugin of the run, which must still be the code the
    run recorded (its sha256); a folder's ``.py`` files only are read."""
    sources = []
    for source in run.plugins:
        kind = source.plugin.source
        if kind not in ("file", "directory"):
            continue
        path = Path(source.value)
        found = code_sha256(path, kind)
        if found != source.plugin.sha256:
            now = (f"now has sha256 {found[:12]}…" if found else "is gone" if not path.exists()
                   else f"is no longer a {'file' if kind == 'file' else 'folder'}")
            raise UserError(f"{where.run}: {kind} plugin {source.value} {now}, but the run recorded sha256 "
                            f"{str(source.plugin.sha256)[:12]}…; the submission must carry the code the run used: restore it")
        sources.append((StoredSource(kind=kind, sha256=found), path))
    return sources


def _refuse_stored(bundle: Bundle, record: RunRecord, stored: list[Checked], where: Where) -> None:
    """Refuse content already stored, scores already stored (one run relabelled), and a second
    run of a stored configuration and seed."""
    for other in stored:
        if other.content_sha256 == bundle.content_sha256:
            raise UserError(f"{where.result}: already stored as submission {other.id} (the same metrics, scores and "
                            "configuration; only timestamps or formatting differ)")
    for other in stored:
        if other.scores_sha256 == bundle.scores_sha256:
            raise UserError(f"{where.scores}: its scores, labels and ids are those of stored submission {other.id} (seed "
                            f"{other.seed}); one run relabelled with another seed or setting is still one run")
    mine = (configuration(record), seed_label(record))
    for other in stored:
        if (other.configuration, other.seed) == mine:
            raise UserError(f"{where.result}: seed {mine[1]} of this configuration is already stored as submission {other.id}; "
                            "a second run of one seed is not another seed: train with another --seed")


SCORE_KINDS = ("logits", "probabilities")


def converted_probabilities(record: RunRecord, scores: np.ndarray, labels: np.ndarray, ids: np.ndarray,
                            where: Where) -> tuple[RunRecord, np.ndarray]:
    """A trained run's stored probabilities as float32 logits, and its record with the metrics
    of those. The run must first be what it claims: arrays of its shapes and dtypes, metrics
    re-scored from the probabilities it stored. A fusion is refused: its scores are fused
    from its members' stored ones, which are checked against it."""
    if record.kind != "train":
        raise UserError(f"{where.result}: --scores probabilities converts a trained run's scores, and this is a "
                        f"{record.kind}, whose scores are fused from its members' stored ones: submit it without --scores")
    checks.check_arrays(record, scores, labels, ids, where)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # probabilities, as declared
        checks.check_metrics(record, scores, labels, where)
    logits = from_probabilities(scores, name=f"{where.scores} (scores)").astype(np.float32)
    return dataclasses.replace(record, metrics=evaluate(logits, labels)), logits


def submit(run_dir: Path, root: Path, registry, *, score_kind: str = "logits") -> Bundle:
    """Validate ``run_dir`` and store it under ``root/submissions``; returns the stored bundle.

    ``registry`` (a ``harness.registry.Registry``) gives the dataset's canonical fingerprint
    and a fusion's component. ``score_kind`` is what the run's scores are (``SCORE_KINDS``):
    probabilities are converted (``converted_probabilities``). Every refusal is one
    ``UserError`` line naming file and field.
    """
    from filelock import FileLock

    from harness.registry import Registry

    if score_kind not in SCORE_KINDS:
        raise UserError(f"score_kind {score_kind!r}: expected one of {', '.join(SCORE_KINDS)}")
    run_dir = Path(run_dir)
    where = where_in(run_dir)
    if not Path(where.result).is_file():
        raise UserError(f"{run_dir}: no {RESULT_FILE}; submit a finished run folder")
    record = RunRecord.from_json(Path(where.result).read_bytes(), where.result)
    checks.check_names(record, where)  # before run.json is read, so that a forged name is refused as result.json's
    run, log, sources, members, unchecked = None, None, [], None, None
    if record.kind == "train":
        run = ResolvedRun.from_dict(read_json(Path(where.run), "run file"), where.run)
        check_plugin_values(run, where.run)
        log = read_log(Path(where.log))
    scores, labels, ids = read_scores(Path(where.scores))
    ids = np.asarray([str(i) for i in ids])
    if score_kind == "probabilities":
        record, scores = converted_probabilities(record, scores, labels, ids, where)
    if run is None:
        members = find_members(record, stored_bundles(root), where)
    status, canonical, _ = check_submission(Submission(record=record, scores=scores, labels=labels, ids=ids, run=run,
                                                       log=log, members=members, where=where), registry)
    if run is not None:
        unchecked = check_submitted_split(run_dir, record.dataset.train_hash, ids)
        sources = _plugin_sources(run, where)

    scores_sha256 = arrays_sha256(scores, labels, ids)
    bundle = Bundle(
        id="", content_sha256="", submitted=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        harness_version=__version__, data=status, canonical_fingerprint=canonical, scores_layout=LAYOUT,
        scores_sha256=scores_sha256, submitted_scores_sha256=sha256_of(where.scores), result=record.to_dict(),
        run=run.to_dict() if run else None, log=log, sources=[source for source, _ in sources],
        members=None if members is None else [b.id for b in members],
        scores_converted=None if score_kind == "logits" else score_kind,
    )
    bundle.content_sha256 = bundle.content()
    bundle.id = bundle.content_sha256[:ID_LENGTH]
    folder = submission_folder(root, record, where.result)
    (Path(root) / SUBMISSIONS).mkdir(parents=True, exist_ok=True)
    with FileLock(str(Path(root) / SUBMISSIONS / ".lock")):
        stored, _ = checked_submissions(root, Registry(), incremental=True)  # as build checks them
        _refuse_stored(bundle, record, stored, where)
        for source, original in sources:
            store_source(root, source, original)
        bundle.path = folder / f"{record.run_id}--{bundle.id}.json"
        write_packed(bundle.scores_path, scores, labels, ids)
        write_bundle(bundle.path, bundle)
    if unchecked:
        progress_log.warning(unchecked)
    return bundle
