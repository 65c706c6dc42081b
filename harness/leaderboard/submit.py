"""``bench leaderboard submit``: validate a finished run folder and store it as a bundle.

A trained run is accepted when every check of ``checks`` passes: the schema, plain names,
the protocol's hash, metrics re-scored from its scores, the dataset fingerprint proven from
the test ids and labels (equal to the dataset's canonical one where it declares one), the
result consistent with ``run.json``, and deviations recomputed from ``run.json``, the log
and the weights recorded. A fusion is accepted when its members are stored submissions
and fusing their stored scores gives its scores exactly (``members``). Then, under a lock, a submission
whose content is already stored, or a second run of a stored configuration and seed, is
refused; otherwise the bundle, its scores and the code of its file and directory plugins
are written, all under ``root`` and nowhere else.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from harness import __version__
from harness.config import ResolvedRun
from harness.errors import UserError
from harness.leaderboard import checks
from harness.leaderboard.bundle import (
    SUBMISSIONS,
    Bundle,
    EpochLog,
    StoredSource,
    arrays_sha256,
    code_sha256,
    content_sha256,
    store_source,
    stored_bundles,
    submission_folder,
    write_bundle,
)
from harness.leaderboard.checks import Where
from harness.leaderboard.members import check_fused, find_members
from harness.leaderboard.packed_scores import LAYOUT, write_packed
from harness.leaderboard.rows import configuration, seed_label
from harness.naming import sha256_of
from harness.results import RESULT_FILE, RunRecord, parse_value
from harness.rundir import LOG_FILE, RUN_FILE, SCORES_FILE, read_json, read_scores


def where_in(run_dir: Path) -> Where:
    return Where(*(str(Path(run_dir) / name) for name in (RESULT_FILE, SCORES_FILE, RUN_FILE, LOG_FILE)))


def read_log(path: Path) -> list[EpochLog]:
    return parse_value(list[EpochLog], read_json(path, "log"), str(path), "the log")


def _plugin_sources(run: ResolvedRun, where: Where) -> list[tuple[StoredSource, Path]]:
    """The code of every file and directory plugin of the run, which must still be the code the
    run recorded (its sha256); only ``.py`` files are read."""
    sources = []
    for source in run.plugins:
        kind = source.plugin.source
        if kind not in ("file", "directory"):
            continue
        path = Path(source.value)
        found = code_sha256(path, kind) if kind == "directory" or path.suffix == ".py" else None
        if found is None or found != source.plugin.sha256:
            now = "is gone" if found is None else f"now has sha256 {found[:12]}…"
            raise UserError(f"{where.run}: plugin {source.value} {now}, but the run recorded sha256 "
                            f"{str(source.plugin.sha256)[:12]}…; the submission must carry the code the run used: restore it")
        sources.append((StoredSource(kind=kind, sha256=found), path))
    return sources


def _refuse_stored(bundle: Bundle, record: RunRecord, stored: list[Bundle], where: Where) -> None:
    """Refuse content already stored, and a second run of a stored configuration and seed."""
    for other in stored:
        if other.content_sha256 == bundle.content_sha256:
            raise UserError(f"{where.result}: already stored as submission {other.id} (the same metrics, scores and "
                            "configuration; only timestamps or formatting differ)")
    mine = (configuration(record), seed_label(record))
    for other in stored:
        if (configuration(other.record), seed_label(other.record)) == mine:
            raise UserError(f"{where.result}: seed {mine[1]} of this configuration is already stored as submission {other.id}; "
                            "a second run of one seed is not another seed: train with another --seed")


def submit(run_dir: Path, root: Path, registry) -> Bundle:
    """Validate ``run_dir`` and store it under ``root/submissions``; returns the stored bundle.

    ``registry`` (a ``harness.registry.Registry``) gives the dataset's canonical fingerprint
    and a fusion's component. Every refusal is one ``UserError`` line naming file and field.
    """
    from filelock import FileLock

    run_dir = Path(run_dir)
    where = where_in(run_dir)
    if not Path(where.result).is_file():
        raise UserError(f"{run_dir}: no {RESULT_FILE}; submit a finished run folder")
    record = RunRecord.from_json(Path(where.result).read_bytes(), where.result)
    checks.check_names(record, where)
    scores, labels, ids = read_scores(Path(where.scores))
    ids = np.asarray([str(i) for i in ids])
    checks.check_arrays(record, scores, labels, ids, where)
    rules = checks.check_protocol(record, where)
    checks.check_metrics(record, scores, labels, where)
    checks.proven_fingerprint(record, labels, ids, where)
    run, log, sources, members = None, None, [], None
    if record.kind == "train":
        run = ResolvedRun.from_dict(read_json(Path(where.run), "run file"), where.run)
        log = read_log(Path(where.log))
        checks.check_run_file(record, run, where)
        checks.check_log(log, run, rules, where)
        checks.check_deviations(record, checks.expected_deviations(record, run), where)
        sources = _plugin_sources(run, where)
        dataset_spec = run.dataset
    else:
        found = find_members(record, stored_bundles(root), where)
        check_fused(record, scores, ids, found, registry.get("fusion", record.fusion.name), where)
        members = [b.id for b in found]
        dataset_spec = found[0].resolved.dataset if found[0].resolved else record.dataset.name
    canonical = registry.get("dataset", dataset_spec).spec.canonical_fingerprint
    status = checks.data_status(record, canonical, where)

    result = record.to_dict()
    run_data = run.to_dict() if run else None
    log_data = [dataclasses.asdict(entry) for entry in log] if log is not None else None
    scores_sha256 = arrays_sha256(scores, labels, ids)
    content = content_sha256(result, run_data, log_data, scores_sha256)
    bundle = Bundle(
        id=content[:12], content_sha256=content, submitted=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        harness_version=__version__, data=status, scores_layout=LAYOUT, scores_sha256=scores_sha256,
        submitted_scores_sha256=sha256_of(where.scores), result=result, run=run_data, log=log,
        sources=[source for source, _ in sources], members=members,
    )
    folder = submission_folder(root, record, where.result)
    (Path(root) / SUBMISSIONS).mkdir(parents=True, exist_ok=True)
    with FileLock(str(Path(root) / SUBMISSIONS / ".lock")):
        _refuse_stored(bundle, record, stored_bundles(root), where)
        for source, original in sources:
            store_source(root, source, original)
        bundle.path = folder / f"{record.run_id}--{bundle.id}.json"
        write_packed(bundle.scores_path, scores, labels, ids)
        write_bundle(bundle.path, bundle)
    return bundle
