"""``bench leaderboard build``: every stored bundle checked again, grouped and rendered.

A bundle in ``submissions/`` may have been added by hand (a pull request), so each one
passes the checks ``submit`` ran (those that need no plugin) before it becomes a row: its
content must still hash to its id, its metrics must re-score, its fingerprint must be
proven by its scores file, its deviations must be those its run file and log show, and no
configuration and seed may be stored twice; a fusion is fused again from its stored members.
A row is ``verified`` when every submission in it has a verification of its own content
beside it (a fusion: when it was fused again here and all its members are verified).

The outputs are one table per dataset and protocol in md, csv, tex and html, and an index
(``leaderboards/tables/index.md`` and ``index.html``); they depend on the stored files only, never
on the date, so ``--check`` can tell whether the committed tables are stale.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Iterable

from harness.errors import UserError
from harness.leaderboard import checks, page, render
from harness.leaderboard.bundle import (
    Bundle,
    arrays_sha256,
    content_sha256,
    read_verification,
    stored_bundles,
    submission_folder,
)
from harness.leaderboard.checks import Where
from harness.leaderboard.members import check_fused
from harness.leaderboard.packed_scores import read_packed
from harness.leaderboard.render import Table
from harness.leaderboard.rows import (
    DEVIATIONS_SECTION,
    PAPER_PROTOCOL,
    PROTOCOL_SECTION,
    SELF_REPORTED,
    VERIFIED,
    configuration,
    paper_rows,
    protocol_section,
    reproduced_rows,
    seed_label,
    submission_frame,
)

TABLES = "tables"
FORMATS = ("md", "csv", "tex", "html")
BASELINES = Path(__file__).resolve().parents[2] / "baselines"
RENDER = {"md": render.markdown, "csv": render.csv_text, "tex": render.latex, "html": page.table_page}


def stored_where(bundle: Bundle) -> Where:
    return Where(result=f"{bundle.path} (result)", scores=str(bundle.scores_path), run=f"{bundle.path} (run)",
                 log=f"{bundle.path} (log)")


def _canonical(bundle: Bundle, by_id: dict[str, Bundle], registry) -> str | None | bool:
    """The canonical fingerprint this harness declares for the bundle's dataset; ``False`` when
    the dataset is not known without its plugin (the status recorded at submission stands)."""
    trained = bundle if bundle.resolved is not None else by_id[bundle.members[0]]
    try:
        return registry.get("dataset", trained.resolved.dataset).spec.canonical_fingerprint
    except UserError:
        return False


def check_stored(bundle: Bundle, by_id: dict[str, Bundle], root: Path, registry) -> bool:
    """The checks of ``submit`` again, on a stored bundle; False when a fusion could not be
    fused again here (its fusion comes from a plugin this harness lacks)."""
    where = stored_where(bundle)
    record = bundle.record
    checks.check_names(record, where)
    if bundle.path.parent.resolve() != submission_folder(root, record, where.result).resolve():
        raise UserError(f"{bundle.path}: lies outside submissions/{record.dataset.name}/{record.protocol.name}/; move it back")
    scores, labels, ids = read_packed(bundle.scores_path)
    checks.check_arrays(record, scores, labels, ids, where)
    rules = checks.check_protocol(record, where)
    checks.check_metrics(record, scores, labels, where)
    checks.proven_fingerprint(record, labels, ids, where)
    log = [dataclasses.asdict(entry) for entry in bundle.log] if bundle.log is not None else None
    scores_sha256 = arrays_sha256(scores, labels, ids)
    if scores_sha256 != bundle.scores_sha256 or content_sha256(bundle.result, bundle.run, log, scores_sha256) != bundle.content_sha256:
        raise UserError(f"{bundle.path}: its content no longer hashes to content_sha256 {bundle.content_sha256[:12]}…; "
                        "it was edited after it was submitted: restore it from version control")
    if bundle.resolved is not None:
        checks.check_run_file(record, bundle.resolved, where)
        checks.check_log(bundle.log, bundle.resolved, rules, where)
        checks.check_deviations(record, checks.expected_deviations(record, bundle.resolved), where)
    for member in bundle.members or []:
        if member not in by_id:
            raise UserError(f"{bundle.path}: member submission {member} is not stored; restore it")
    canonical = _canonical(bundle, by_id, registry)
    if canonical is not False and checks.data_status(record, canonical, where) != bundle.data:
        raise UserError(f"{bundle.path}: data is {bundle.data!r}, but its fingerprint makes it "
                        f"{checks.data_status(record, canonical, where)!r}")
    if record.kind != "fusion":
        return True
    members = [by_id[member] for member in bundle.members]
    if [(m.record.run_id, m.submitted_scores_sha256) for m in members] != [(m.run_id, m.scores_sha256) for m in record.members]:
        raise UserError(f"{bundle.path}: members are not the runs its result.members names")
    try:
        component = registry.get("fusion", record.fusion.name)
    except UserError:
        return False
    check_fused(record, scores, ids, members, component, where)
    return True


def verification_status(bundle: Bundle, by_id: dict[str, Bundle], unfused: set[str]) -> str:
    """``verified`` for a submission with a verification of its own content, and for a fusion
    fused again here from verified members; else ``self-reported``."""
    if bundle.members:
        verified = bundle.id not in unfused and all(
            verification_status(by_id[m], by_id, unfused) == VERIFIED for m in bundle.members)
        return VERIFIED if verified else SELF_REPORTED
    return VERIFIED if read_verification(bundle) is not None else SELF_REPORTED


def checked_bundles(root: Path) -> tuple[list[Bundle], set[str]]:
    """Every stored bundle, each checked, with no configuration and seed stored twice; and the
    ids of fusions that could not be fused again here."""
    from harness.registry import Registry

    bundles = stored_bundles(root)
    by_id = {bundle.id: bundle for bundle in bundles}
    registry = Registry()
    seen: dict[str, Bundle] = {}
    unfused = set()
    for bundle in bundles:
        if not check_stored(bundle, by_id, root, registry):
            unfused.add(bundle.id)
        key = repr((configuration(bundle.record), seed_label(bundle.record)))
        if key in seen:
            raise UserError(f"{bundle.path}: the same configuration and seed as {seen[key].path}; one seed is stored "
                            "once: remove one of them")
        seen[key] = bundle
    return bundles, unfused


def paper_datasets(baselines: Path) -> list[str]:
    names = set()
    for path in sorted((Path(baselines) / PAPER_PROTOCOL).glob("table*.csv")):
        with open(path, newline="") as stream:
            names |= {row["dataset"] for row in csv.DictReader(stream)}
    return sorted(names)


def build_tables(root: Path, baselines: Path = BASELINES) -> list[Table]:
    """One table per dataset and protocol with submissions, and the paper's datasets under
    ``wang2019`` so that its reported rows are always there."""
    bundles, unfused = checked_bundles(root)
    by_id = {bundle.id: bundle for bundle in bundles}
    groups: dict[tuple[str, str], list[Bundle]] = {(name, PAPER_PROTOCOL): [] for name in paper_datasets(baselines)}
    for bundle in bundles:
        record = bundle.record
        groups.setdefault((record.dataset.name, record.protocol.name), []).append(bundle)
    tables = []
    for (dataset, protocol), members in sorted(groups.items()):
        entries = [(b.record, verification_status(b, by_id, unfused), b.data) for b in members]
        rows = reproduced_rows(submission_frame(entries))
        paper = paper_rows(baselines, dataset) if protocol == PAPER_PROTOCOL else []
        sections = {
            PROTOCOL_SECTION: protocol_section(paper, [r for r in rows if r.section == PROTOCOL_SECTION]),
            DEVIATIONS_SECTION: [r for r in rows if r.section == DEVIATIONS_SECTION],
        }
        classes = list(members[0].record.dataset.classes) if members else []
        tables.append(Table(dataset, protocol, sections, classes))
    return tables


def build_outputs(root: Path, formats: Iterable[str] = FORMATS, baselines: Path = BASELINES) -> dict[str, str]:
    """Every generated file's text by its path relative to ``root``."""
    formats = tuple(formats)
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise UserError(f"--format {','.join(formats)!r}: choose from {', '.join(FORMATS)}")
    tables = build_tables(root, baselines)
    outputs = {f"{TABLES}/{t.stem}.{fmt}": RENDER[fmt](t) for t in tables for fmt in formats}
    if "md" in formats:
        outputs[f"{TABLES}/index.md"] = render.index_markdown(tables, formats)
    if "html" in formats:
        outputs[f"{TABLES}/index.html"] = page.index_page(tables, formats)
    return outputs


def stale_files(root: Path, outputs: dict[str, str], formats: Iterable[str] = FORMATS) -> list[str]:
    """Generated files that differ from ``outputs``, are missing, or would no longer be generated."""
    root = Path(root)
    stale = [f"{name} ({'changed' if (root / name).is_file() else 'missing'})"
             for name, text in outputs.items()
             if not (root / name).is_file() or (root / name).read_text(encoding="utf-8") != text]
    for fmt in formats:
        for path in sorted((root / TABLES).glob(f"*.{fmt}")):
            name = path.relative_to(root).as_posix()
            if name not in outputs:
                stale.append(f"{name} (no longer generated)")
    return stale


def write_outputs(root: Path, outputs: dict[str, str], formats: Iterable[str] = FORMATS) -> list[str]:
    """Write ``outputs`` under ``root`` (atomically) and delete generated tables no longer
    produced; returns what changed."""
    from harness.rundir import atomic_write

    root = Path(root)
    changed = stale_files(root, outputs, formats)
    for name, text in outputs.items():
        path = root / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            data = text.encode("utf-8")
            atomic_write(path, lambda stream: stream.write(data))
    for entry in changed:
        if entry.endswith("(no longer generated)"):
            (root / entry.split(" ")[0]).unlink()
    return changed
