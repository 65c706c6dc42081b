"""``bench leaderboard build``: every stored bundle checked again, grouped and rendered.

A bundle in ``submissions/`` may have been added or edited by hand (a pull request), so each
one passes the checks ``submit`` ran (``submission_check.check_submission``, running no
submitter code) before it becomes a row:
its content (with the sha256 of its submitted scores file and the canonical fingerprint it
was checked against) must still hash to its id, its metrics must re-score, its fingerprint
must be proven by its scores file, its ``data`` must follow from that fingerprint and the
canonical one (which must be the one this harness declares, for a dataset it knows), its
``sources`` must be its run's file and directory plugins with code that still hashes to
their names, its deviations must be those its run file and log show, and no configuration
and seed, and no scores, may be stored twice; a fusion's members must be different trained
submissions, described as they are stored, and it is fused again from them. A verification
beside a bundle must name its content, result and scores by their hashes and be signed by a
key in ``allowed_signers`` (``signing``). A row is
``verified`` when every submission in it has such a verification (a fusion: when it was
fused again here and all its members are verified).

``build`` checks again only the submissions whose files changed since a build or submit on
this machine checked them (``checked_record``: a record beside the tables that a hand edit
cannot make trusted); ``build --check`` checks every one.

The outputs are one table per dataset and protocol in md, csv, tex and html, and an index
(``leaderboards/tables/index.md`` and ``index.html``); they depend on the stored files only, never
on the date, so ``--check`` can tell whether the committed tables are stale. The build writes
no file through a link and removes only files its manifest of generated files lists
(``generated``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from harness.errors import UserError
from harness.leaderboard import generated, page, render
from harness.leaderboard.baseline_delta import add_baseline_deltas
from harness.leaderboard.bundle import MAX_SCORES_BYTES, regular_file
from harness.leaderboard.checked_record import Checked, checked_submissions, verification_status
from harness.leaderboard.packed_scores import read_packed
from harness.leaderboard.render import Table
from harness.leaderboard.rows import (
    DEVIATIONS_SECTION,
    PAPER_PROTOCOL,
    PROTOCOL_SECTION,
    SELF_REPORTED,
    VERIFIED,
    paper_records,
    paper_rows,
    protocol_section,
    rank_rows,
    reproduced_rows,
    submission_frame,
)
from harness.leaderboard.submission_check import declared_canonical

TABLES = "tables"
FORMATS = ("md", "csv", "tex", "html")
BASELINES = "baselines"  # the paper's rows, beside the leaderboards folder: <repo>/baselines
RENDER = {"md": render.markdown, "csv": render.csv_text, "tex": render.latex, "html": page.table_page}
NO_LONGER_GENERATED = "no longer generated"


def remarks(dataset: str, protocol: str, registry) -> list[str]:
    """What a table must say about its data: a dataset this harness knows that declares no
    canonical fingerprint yet has only non-canonical rows, never compared with the paper."""
    if declared_canonical(dataset, registry) is not None:
        return []
    paper = "; they get no difference (Δ) to the paper's rows" if protocol == PAPER_PROTOCOL else ""
    return [f"{dataset} declares no canonical fingerprint yet, so its reproduced rows are non-canonical (their data "
            f"is not proven to be the complete official data) until it does{paper}."]


def baselines_folder(root: Path, baselines: Path | None) -> Path | None:
    """Where the paper's rows lie: ``baselines`` when given (refused in one line when it is no
    folder), else the ``baselines`` folder beside ``root`` (``<repo>/baselines`` for
    ``<repo>/leaderboards``), or None when there is none (an installed harness has no checkout)."""
    if baselines is not None:
        if not Path(baselines).is_dir():
            raise UserError(f"--baselines {baselines}: no such folder; give the folder that holds "
                            f"{PAPER_PROTOCOL}/table*.csv (the repository's baselines/)")
        return Path(baselines)
    beside = Path(root).resolve().parent / BASELINES
    return beside if beside.is_dir() else None


def stored_scores(bundle_path: Path):
    """The ``(scores, labels, ids)`` stored beside a bundle file, read as ``Bundle.scores`` does."""
    return read_packed(regular_file(bundle_path.with_name(f"{bundle_path.name[:-len('.json')]}.scores.npz"),
                                    "scores file", MAX_SCORES_BYTES))


def build_tables(root: Path, baselines: Path | None = None, *, incremental: bool = False) -> list[Table]:
    """One table per dataset and protocol with submissions, and the paper's datasets under
    ``wang2019`` so that its reported rows are always there (from ``baselines_folder``: without
    one, ``wang2019`` tables say that they lack them); ``incremental`` checks again only the
    submissions ``checked_record`` does not hold unchanged."""
    from harness.registry import Registry

    baselines = baselines_folder(root, baselines)
    registry = Registry()
    checked, _ = checked_submissions(root, registry, incremental=incremental)
    by_id = {item.id: item for item in checked}
    paper_known = paper_records(baselines) if baselines is not None else []
    groups: dict[tuple[str, str], list[Checked]] = {(r["dataset"], PAPER_PROTOCOL): [] for r in paper_known}
    for item in checked:
        groups.setdefault((item.dataset, item.protocol), []).append(item)
    tables = []
    for (dataset, protocol), members in sorted(groups.items()):
        entries = [{**item.row, "verification": VERIFIED if verification_status(item, by_id) else SELF_REPORTED}
                   for item in members]
        rows = reproduced_rows(submission_frame(entries))
        paper = paper_rows(baselines, dataset) if protocol == PAPER_PROTOCOL and baselines is not None else []
        sections = {
            PROTOCOL_SECTION: protocol_section(paper, [r for r in rows if r.section == PROTOCOL_SECTION]),
            DEVIATIONS_SECTION: [r for r in rows if r.section == DEVIATIONS_SECTION],
        }
        for section_rows in sections.values():
            rank_rows(section_rows)
            add_baseline_deltas(section_rows, lambda path: stored_scores(Path(root) / path))
        classes = list(members[0].row["classes"]) if members else []
        notes = remarks(dataset, protocol, registry)
        if protocol == PAPER_PROTOCOL and baselines is None:
            notes.append(f"The paper's rows are left out: there is no {BASELINES} folder beside the leaderboards folder "
                         "(give `bench leaderboard build --baselines DIR`).")
        tables.append(Table(dataset, protocol, sections, classes, notes))
    return tables


def build_outputs(root: Path, formats: Iterable[str] = FORMATS, baselines: Path | None = None, *,
                  incremental: bool = False) -> dict[str, str]:
    """Every generated file's text by its path relative to ``root``; ``incremental`` as in ``build_tables``."""
    formats = tuple(formats)
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise UserError(f"--format {','.join(formats)!r}: choose from {', '.join(FORMATS)}")
    tables = build_tables(root, baselines, incremental=incremental)
    outputs = {f"{TABLES}/{t.stem}.{fmt}": RENDER[fmt](t) for t in tables for fmt in formats}
    if "md" in formats:
        outputs[f"{TABLES}/index.md"] = render.index_markdown(tables, formats)
    if "html" in formats:
        outputs[f"{TABLES}/index.html"] = page.index_page(tables, formats)
    return outputs


def _manifest(root: Path, outputs: dict[str, str], formats: Iterable[str], previous: list[str]) -> str:
    """The manifest after writing ``outputs``: those, and files of other formats that an earlier
    build generated and that are still there."""
    kept = [name for name in previous if generated.entry_format(name) not in formats and generated.check_file(root / name)]
    return generated.manifest_text([*outputs, *kept])


def stale_files(root: Path, outputs: dict[str, str], formats: Iterable[str] = FORMATS) -> list[tuple[str, str]]:
    """``(file, reason)`` for every generated file that differs from ``outputs`` (``changed``),
    is ``missing``, or would no longer be generated (only files the manifest of generated files
    lists: ``generated``), and for that manifest; files relative to ``root``. An output folder
    or file that is a link is refused."""
    root = Path(root)
    formats = tuple(formats)
    generated.check_folder(root, TABLES)
    stale = []
    for name, text in outputs.items():
        if not generated.check_file(root / name):
            stale.append((name, "missing"))
        elif (root / name).read_text(encoding="utf-8") != text:
            stale.append((name, "changed"))
    previous = generated.read_manifest(root)
    for name in previous:
        if name not in outputs and generated.entry_format(name) in formats and generated.check_file(root / name):
            stale.append((name, NO_LONGER_GENERATED))
    manifest = root / generated.MANIFEST
    if not generated.check_file(manifest):
        stale.append((generated.MANIFEST, "missing"))
    elif manifest.read_text(encoding="utf-8") != _manifest(root, outputs, formats, previous):
        stale.append((generated.MANIFEST, "changed"))
    return stale


def write_outputs(root: Path, outputs: dict[str, str], formats: Iterable[str] = FORMATS) -> list[tuple[str, str]]:
    """Write ``outputs`` under ``root`` (atomically, never through a link), delete the files the
    manifest of generated files lists that are no longer produced, and write the manifest;
    returns what changed, as ``stale_files`` does."""
    from harness.files import atomic_write

    root = Path(root)
    formats = tuple(formats)
    changed = stale_files(root, outputs, formats)
    manifest = _manifest(root, outputs, formats, generated.read_manifest(root))
    for name, reason in changed:
        if reason == NO_LONGER_GENERATED:
            (root / name).unlink()
        elif name != generated.MANIFEST:
            data = outputs[name].encode("utf-8")
            atomic_write(root / name, lambda stream: stream.write(data))
    if any(name == generated.MANIFEST for name, _ in changed):
        atomic_write(root / generated.MANIFEST, lambda stream: stream.write(manifest.encode("utf-8")))
    return changed
