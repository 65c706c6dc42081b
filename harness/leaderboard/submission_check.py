"""``check_submission``: the one sequence of checks a submission passes, whether it comes from
a run folder (``submit``) or is stored (``build``, ``checked_record`` and ``reproduce``).

Every check is in ``checks`` (and ``members`` for a fusion); this module says in which order
they run and which of them only a stored bundle needs. A stored bundle may have been added or
edited by hand, so on top of what ``submit`` checks it must lie in its dataset and protocol's
folder, still hash to its id, say the ``data`` status its fingerprints give, store exactly its
run's file and directory plugins under their sha256, name as members the runs its result
names, and carry the canonical fingerprint this harness declares for its dataset. Checking a
stored bundle runs no submitter code: a recipe other than the built-in one is left to
``submit`` and ``reproduce``, and a fusion whose component is not installed here is reported
as not fused again rather than refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.config import ResolvedRun
from harness.errors import UserError
from harness.leaderboard import checks
from harness.leaderboard.bundle import Bundle, EpochLog, StoredSource, arrays_sha256
from harness.leaderboard.checks import Where
from harness.leaderboard.members import check_fused, check_members
from harness.leaderboard.store import source_path, submission_folder
from harness.naming import code_sha256
from harness.recipes import DEFAULT_RECIPE
from harness.results import RunRecord


@dataclass
class Submission:
    """What a submission holds, as read from a run folder or a stored bundle: the result, its
    test scores, labels and ids, a trained run's resolved configuration and log (None for a
    fusion), a fusion's member submissions (None for a trained run), and where each lies."""

    record: RunRecord
    scores: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    run: ResolvedRun | None
    log: list[EpochLog] | None
    members: list[Bundle] | None
    where: Where


def stored_where(bundle: Bundle) -> Where:
    return Where(result=f"{bundle.path} (result)", scores=str(bundle.scores_path), run=f"{bundle.path} (run)",
                 log=f"{bundle.path} (log)")


def declared_canonical(dataset: str, registry) -> str | None | bool:
    """The canonical fingerprint this harness declares for ``dataset`` (None: none yet);
    ``False`` when the dataset is not known without its plugin."""
    try:
        return registry.get("dataset", dataset).spec.canonical_fingerprint
    except UserError:
        return False


def refuse_imported(record: RunRecord, where: Where) -> None:
    """Refuse a run whose plugin code imported a module from beside itself (``source``
    ``imported``): a bundle stores plugin files and package folders only, so that module's
    code would be neither stored nor reproducible."""
    for plugin in record.plugins:
        if plugin.source == "imported":
            raise UserError(f"{where.result}: plugin code imported module {plugin.name!r} ({plugin.path}), which is in no "
                            "plugin file, package folder or installed distribution, so a submission cannot carry it: "
                            "move it into a package-folder plugin (CONTRIBUTING.md) and train again")


def check_submission(submission: Submission, registry, *, stored: Bundle | None = None,
                     root: Path | None = None) -> tuple[str, str | None, bool]:
    """Run every check on ``submission``; returns its ``data`` status, the canonical
    fingerprint it was checked against (the one ``registry``'s dataset declares, None when it
    declares none) and whether a fusion was fused again here (always True for a trained run).

    ``stored`` is the bundle the submission was read from (under ``root``): it is checked
    against the canonical fingerprint it recorded, which must be the declared one, gets the
    stored-only checks of the module docstring, runs no non-default recipe's code, and a
    fusion whose component this harness lacks returns False instead of being refused. Every
    refusal is one ``UserError`` line naming the file and field.
    """
    record, where = submission.record, submission.where
    scores, labels, ids = submission.scores, submission.labels, submission.ids
    checks.check_names(record, where)
    refuse_imported(record, where)
    if stored is not None and stored.path.parent.resolve() != submission_folder(root, record, where.result).resolve():
        raise UserError(f"{stored.path}: lies outside submissions/{record.dataset.name}/{record.protocol.name}/; move it back")
    checks.check_ranges(record, submission.log, where)
    checks.check_arrays(record, scores, labels, ids, where)
    rules = checks.check_protocol(record, where)
    checks.check_metrics(record, scores, labels, where)
    checks.proven_fingerprint(record, labels, ids, where)
    if stored is not None:
        _check_stored_content(stored, submission)
    run = submission.run
    if run is not None:
        checks.check_run_file(record, run, where)
        checks.check_log(submission.log, run, rules, where)
        if stored is None or run.recipe == DEFAULT_RECIPE:  # another recipe's code is the submitter's: not build's
            checks.check_optimizer(submission.log, record, run, rules, registry.get("recipe", run.recipe), where)
        checks.check_deviations(record, checks.expected_deviations(record, run), where)
        if stored is not None:
            _check_sources(stored, root)
        dataset = run.dataset
    else:
        if stored is not None:
            _check_stored_members(stored, submission.members)
        check_members(record, submission.members, where)
        dataset = submission.members[0].resolved.dataset
    if stored is None:
        canonical = registry.get("dataset", dataset).spec.canonical_fingerprint
    else:
        canonical = _stored_canonical(stored, dataset, registry)
    status = checks.data_status(record, canonical, where)
    if stored is not None and status != stored.data:
        raise UserError(f"{stored.path}: data is {stored.data!r}, but its fingerprint and canonical_fingerprint make it "
                        f"{status!r}; restore it from version control")
    if record.kind != "fusion":
        return status, canonical, True
    try:
        component = registry.get("fusion", record.fusion.name)
    except UserError:
        if stored is None:
            raise
        return status, canonical, False
    check_fused(record, scores, ids, submission.members, component, where)
    return status, canonical, True


def _stored_canonical(bundle: Bundle, dataset: str, registry) -> str | None:
    """The canonical fingerprint ``bundle`` recorded, which must be the one this harness
    declares for ``dataset`` when it knows the dataset without its plugin."""
    declared = declared_canonical(dataset, registry)
    if declared is not False and declared != bundle.canonical_fingerprint:
        raise UserError(f"{bundle.path}: canonical_fingerprint is {bundle.canonical_fingerprint!r}, but this harness "
                        f"declares {declared!r} for dataset {dataset!r}; submit the run again")
    return bundle.canonical_fingerprint


def _check_stored_content(bundle: Bundle, submission: Submission) -> None:
    """The bundle's scores and content still hash to its id."""
    if (arrays_sha256(submission.scores, submission.labels, submission.ids) != bundle.scores_sha256
            or bundle.content() != bundle.content_sha256):
        raise UserError(f"{bundle.path}: its content no longer hashes to content_sha256 {bundle.content_sha256[:12]}…; "
                        "it was edited after it was submitted: restore it from version control")


def _check_sources(bundle: Bundle, root: Path) -> None:
    """``sources`` are the run's file and directory plugins, each stored with code of its sha256."""
    expected = [StoredSource(kind=s.plugin.source, sha256=str(s.plugin.sha256)) for s in bundle.resolved.plugins
                if s.plugin.source in ("file", "directory")]
    if bundle.sources != expected:
        named = ", ".join(f"{s.kind} {s.sha256[:12]}…" for s in expected) or "none"
        raise UserError(f"{bundle.path}: sources are not the file and directory plugins its run names ({named}); "
                        "restore it from version control")
    for source in bundle.sources:
        path = source_path(root, source)
        if code_sha256(path, source.kind) != source.sha256:
            raise UserError(f"{path}: missing, or not the code of sha256 {source.sha256[:12]}… its name says; restore "
                            "it from version control")


def _check_stored_members(bundle: Bundle, members: list[Bundle]) -> None:
    """The stored members are the runs the fusion's ``result.members`` names, in its order."""
    if [(m.record.run_id, m.submitted_scores_sha256) for m in members] != [
            (m.run_id, m.scores_sha256) for m in bundle.record.members]:
        raise UserError(f"{bundle.path}: members are not the runs its result.members names")


def stored_submission(bundle: Bundle, by_id: dict[str, Bundle]) -> Submission:
    """What ``bundle`` holds, as ``check_submission`` reads it; its members from ``by_id``
    (the stored bundles by id), a member not stored refused in one line."""
    scores, labels, ids = bundle.scores()
    members = None
    if bundle.members:
        missing = next((m for m in bundle.members if m not in by_id), None)
        if missing is not None:
            raise UserError(f"{bundle.path}: member submission {missing} is not stored; restore it")
        members = [by_id[member] for member in bundle.members]
    return Submission(record=bundle.record, scores=scores, labels=labels, ids=ids, run=bundle.resolved, log=bundle.log,
                      members=members, where=stored_where(bundle))


def check_stored(bundle: Bundle, by_id: dict[str, Bundle], root: Path, registry) -> bool:
    """``check_submission`` on a stored bundle; False when a fusion could not be fused again
    here (its fusion comes from a plugin this harness lacks)."""
    _, _, fused = check_submission(stored_submission(bundle, by_id), registry, stored=bundle, root=root)
    return fused
