"""The specs in docs/ keep up with the code.

- docs/METRICS.md has a section for every key ``harness.metrics.evaluate`` returns (for the
  parametrised families, a section for the documented pattern, e.g. ``cp_top{k}``), and none
  for a key it no longer returns.
- docs/PROTOCOL.md has a row in its table of values and a section for every field of
  ``harness.protocol.Protocol`` (read from the dataclass, so a new field fails here until it
  is documented), and the values in that table are the code's.
- every ``*.md`` file that the project cites by name exists.

Each check is a function returning the problems it finds; the tests assert that the list is
empty for the real docs and code, and that it is not empty for a doc or code that has fallen
behind, so that none of them can pass vacuously.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from harness.metrics import METRICS_VERSION, PAPER_COLUMNS, evaluate
from harness.protocol import PROTOCOLS, Protocol

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
METRICS_DOC = DOCS / "METRICS.md"
PROTOCOL_DOC = DOCS / "PROTOCOL.md"

# Where the project cites documents (the docs themselves included).
CITING = ("harness", "plugins", "README.md", "CONTRIBUTING.md", "benchmarks", "baselines", "examples",
          "leaderboards", "docs")
BINARY_SUFFIXES = {".npz", ".npy", ".pt", ".pth", ".pyc", ".png", ".jpg", ".jpeg", ".gif", ".pdf", ".gz",
                   ".zip", ".tar", ".u8", ".mat"}
SKIPPED_DIRS = {"__pycache__", ".git", ".pytest_cache", ".venv", "node_modules"}
# A cited file name, with any folders before it: README.md, docs/METRICS.md, ../../README.md,
# tables/shapes-smoke.md. Not part of a longer name (the look-behind) or a longer suffix (.mdx).
CITATION = re.compile(r"(?<![\w./-])((?:\.\.?/)*(?:[\w-]+/)*[\w-]+\.md)(?![\w-])")
URL = re.compile(r"[a-z][a-z0-9+.-]*://\S+")

BACKTICKED = re.compile(r"`([^`]+)`")


# -- helpers -------------------------------------------------------------------------------


def _read(path: Path) -> str:
    assert path.is_file(), f"{path.relative_to(ROOT)} is missing"
    return path.read_text(encoding="utf-8")


def _heading_names(text: str, level: int = 3) -> list[str]:
    """The first backticked name of every heading of ``level`` that starts with one."""
    prefix = "#" * level + " "
    names = []
    for line in text.splitlines():
        if line.startswith(prefix) and line[len(prefix):].lstrip().startswith("`"):
            names.append(BACKTICKED.search(line).group(1))
    return names


def _section(text: str, title: str) -> str:
    """The text of the level-2 section ``## title``, up to the next level-2 heading."""
    match = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, f"no '## {title}' section"
    return match.group(1)


def _sample() -> tuple[np.ndarray, np.ndarray]:
    """Small random scores and labels with ignored labels and a class without positives."""
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(40, 7)).astype(np.float32)
    labels = (rng.random((40, 7)) < 0.3).astype(np.int8)
    labels[rng.random((40, 7)) < 0.05] = -1
    labels[:, 6][labels[:, 6] == 1] = 0
    return scores, labels


def _threshold_suffix(threshold: float) -> str:
    """What METRICS.md, "Key names", says ``{t}`` stands for."""
    return "" if float(threshold) == 0.5 else repr(float(threshold))


def _expand(name: str, k: int, threshold: float) -> str:
    """A documented key name with its placeholders filled in for ``k`` and ``threshold``."""
    return name.replace("{k}", str(k)).replace("{t}", _threshold_suffix(threshold))


# -- docs/METRICS.md -----------------------------------------------------------------------


def undocumented_keys(keys, doc: str, k: int, threshold: float) -> list[str]:
    """Keys that have no section in ``doc``, literally or through a documented pattern."""
    documented = {_expand(name, k, threshold) for name in _heading_names(doc)}
    return [key for key in keys if key not in documented]


def stale_key_sections(keys, doc: str, k: int, threshold: float) -> list[str]:
    """Key sections of ``doc`` that name no key among ``keys``."""
    return [name for name in _heading_names(doc) if _expand(name, k, threshold) not in set(keys)]


PARAMETERS = [(3, 0.5), (5, 0.5), (3, 0.7), (1, 0.25)]


@pytest.mark.parametrize("k, threshold", PARAMETERS)
def test_every_metric_key_has_a_section(k, threshold):
    keys = list(evaluate(*_sample(), k=k, threshold=threshold))
    missing = undocumented_keys(keys, _read(METRICS_DOC), k, threshold)
    assert not missing, (
        f"evaluate(k={k}, threshold={threshold}) returns {missing}, which docs/METRICS.md does not "
        "document: add a '### `key`' section (with {k}/{t} for a parametrised family)"
    )


def test_every_key_section_names_a_returned_key():
    keys = list(evaluate(*_sample()))
    stale = stale_key_sections(keys, _read(METRICS_DOC), 3, 0.5)
    assert not stale, f"docs/METRICS.md documents {stale}, which evaluate no longer returns"


def test_parametrised_key_names_follow_the_documented_rule():
    """The naming rule in METRICS.md, 'Key names', with its own examples."""
    doc = _section(_read(METRICS_DOC), "Key names")
    scores, labels = _sample()
    for example, k, threshold in (("cp_top5", 5, 0.5), ("cf1_top5_harmonic", 5, 0.5),
                                  ("cp_thr0.7", 3, 0.7), ("of1_thr0.25", 3, 0.25), ("cp_thr", 3, 0.5)):
        assert f"`{example}`" in doc, f"'Key names' should give the example {example}"
        assert example in evaluate(scores, labels, k=k, threshold=threshold)


def test_metric_checks_can_fail():
    keys = list(evaluate(*_sample()))
    doc = _read(METRICS_DOC)
    assert undocumented_keys([*keys, "brand_new_top3"], doc, 3, 0.5) == ["brand_new_top3"]
    assert undocumented_keys(["cp_top3"], "### `cp_top{k}`\n", 5, 0.5) == ["cp_top3"]
    assert undocumented_keys(["cp_thr0.7"], "### `cp_thr`\n", 3, 0.7) == ["cp_thr0.7"]
    assert stale_key_sections(keys, doc + "\n### `retired_key`\n", 3, 0.5) == ["retired_key"]


def test_metrics_doc_names_the_current_version_and_the_paper_columns():
    doc = _read(METRICS_DOC)
    version = re.search(r"`metrics_version` \*\*(\d+)\*\*", doc)
    assert version, "docs/METRICS.md should state '`metrics_version` **N**'"
    assert int(version.group(1)) == METRICS_VERSION
    headings = {BACKTICKED.search(line).group(1): line for line in doc.splitlines()
                if line.startswith("### `")}
    for key, column in PAPER_COLUMNS:
        assert key in headings, f"no section for {key}"
        assert column in headings[key], f"the section of {key} should name the paper's column {column}"


# -- docs/PROTOCOL.md ----------------------------------------------------------------------


def _values_table(doc: str) -> tuple[list[str], dict[str, list[str]]]:
    """(column headers, {field: cells}) of the table in '## Values'."""
    rows = [line for line in _section(doc, "Values").splitlines() if line.startswith("|")]
    split = [[cell.strip() for cell in row.strip().strip("|").split("|")] for row in rows]
    header, body = split[0], split[2:]
    table = {}
    for cells in body:
        name = BACKTICKED.fullmatch(cells[0])
        if name:
            table[name.group(1)] = cells
    return header, table


def shown(value) -> str:
    """A field's value as `bench protocol show` prints it (lists joined with ', ')."""
    if isinstance(value, (tuple, list)):
        return ", ".join(shown(v) for v in value)
    return str(value)


def protocol_doc_problems(doc: str, field_names, protocols) -> list[str]:
    """Every way ``doc`` falls behind the fields and values of ``protocols``."""
    problems = []
    header, table = _values_table(doc)
    sections = _heading_names(_section(doc, "Fields"))
    for name in field_names:
        if name not in table:
            problems.append(f"field {name!r} has no row in '## Values'")
        if name not in sections:
            problems.append(f"field {name!r} has no '### `{name}`' section under '## Fields'")
    for name in set(table) - set(field_names):
        problems.append(f"'## Values' has a row for {name!r}, which is not a field of Protocol")
    for name in set(sections) - set(field_names):
        problems.append(f"'## Fields' has a section for {name!r}, which is not a field of Protocol")
    for protocol in protocols:
        column = next((i for i, cell in enumerate(header) if cell == f"`{protocol.name}`"), None)
        if column is None:
            problems.append(f"'## Values' has no column for protocol {protocol.name!r}")
            continue
        for name in field_names:
            if name == "description" or name not in table:
                continue
            expected = f"`{shown(getattr(protocol, name))}`"
            cells = table[name]
            if column >= len(cells) or expected not in cells[column]:
                problems.append(f"{protocol.name}.{name} is {expected} in the code, the doc says "
                                f"{cells[column] if column < len(cells) else 'nothing'}")
    return problems


def test_every_protocol_field_is_documented_with_its_values():
    field_names = [f.name for f in dataclasses.fields(Protocol)]
    problems = protocol_doc_problems(_read(PROTOCOL_DOC), field_names, PROTOCOLS.values())
    assert not problems, "docs/PROTOCOL.md is behind harness/protocol.py:\n" + "\n".join(problems)


def test_protocol_check_can_fail():
    doc = _read(PROTOCOL_DOC)
    extended = dataclasses.make_dataclass("Extended", [("new_rule", str, "x")], bases=(Protocol,), frozen=True)
    field_names = [f.name for f in dataclasses.fields(extended)]
    problems = protocol_doc_problems(doc, field_names, PROTOCOLS.values())
    assert any("'new_rule' has no row" in p for p in problems)
    assert any("'new_rule' has no '### `new_rule`' section" in p for p in problems)

    real_fields = [f.name for f in dataclasses.fields(Protocol)]
    changed = dataclasses.replace(PROTOCOLS["wang2019"], epochs=41)
    assert protocol_doc_problems(doc, real_fields, [changed]) == [
        "wang2019.epochs is `41` in the code, the doc says `40`"
    ]
    renamed = dataclasses.replace(PROTOCOLS["smoke"], name="tiny")
    assert protocol_doc_problems(doc, real_fields, [renamed]) == ["'## Values' has no column for protocol 'tiny'"]
    assert any("not a field of Protocol" in p for p in protocol_doc_problems(doc, real_fields[1:], []))


def test_documented_hash_recipe_is_the_code_s():
    doc = _read(PROTOCOL_DOC)
    recipe = 'json.dumps(fields, sort_keys=True, separators=(",", ":"))'
    assert recipe in doc
    assert "first 16 hexadecimal digits" in doc
    for protocol in PROTOCOLS.values():
        fields = {f.name: getattr(protocol, f.name) for f in dataclasses.fields(protocol) if f.name != "description"}
        canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
        assert hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16] == protocol.hash


# -- citations -----------------------------------------------------------------------------


def _text_files(root: Path, names) -> list[Path]:
    files = []
    for name in names:
        path = root / name
        candidates = [path] if path.is_file() else sorted(path.rglob("*")) if path.is_dir() else []
        for file in candidates:
            relative = file.relative_to(root).parts
            if (file.is_file() and file.suffix.lower() not in BINARY_SUFFIXES
                    and not any(part in SKIPPED_DIRS or part.endswith(".egg-info") for part in relative)):
                files.append(file)
    return files


def cited_documents(root: Path, names=CITING) -> list[tuple[Path, int, str]]:
    """(citing file, line number, cited name) for every ``*.md`` mention outside URLs."""
    found = []
    for file in _text_files(root, names):
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            for cited in CITATION.findall(URL.sub("", line)):
                found.append((file, number, cited))
    return found


def resolves(root: Path, citing: Path, cited: str) -> bool:
    """A citation is good when the file exists beside the citing file, from the repository's top
    level, or in docs/ (the project's convention: ``METRICS.md`` means ``docs/METRICS.md``)."""
    return any((base / cited).is_file() for base in (citing.parent, root, root / "docs"))


def missing_citations(root: Path, names=CITING) -> list[str]:
    return [
        f"{citing.relative_to(root)}:{number} cites {cited}, which is neither beside it, at the top "
        "level nor in docs/"
        for citing, number, cited in cited_documents(root, names)
        if not resolves(root, citing, cited)
    ]


def test_every_cited_document_exists():
    cited = {Path(name).name for _, _, name in cited_documents(ROOT)}
    assert {"METRICS.md", "PROTOCOL.md", "README.md"} <= cited, "the citation scan found nothing to check"
    missing = missing_citations(ROOT)
    assert not missing, "\n".join(missing)


def test_citation_check_can_fail(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "SPEC.md").write_text("# spec\n")
    (tmp_path / "pkg" / "tables").mkdir(parents=True)
    (tmp_path / "pkg" / "tables" / "t-1.md").write_text("table\n")
    (tmp_path / "pkg" / "code.py").write_text(
        '"""See SPEC.md, docs/SPEC.md, tables/t-1.md and https://example.org/ELSEWHERE.md."""\n'
        "# NOPE.md is cited here, and so is pkg/ALSO_MISSING.md\n"
    )
    missing = missing_citations(tmp_path, ("pkg",))
    assert [m.split(" cites ")[1].split(",")[0] for m in missing] == ["NOPE.md", "pkg/ALSO_MISSING.md"]
    assert missing[0].startswith("pkg/code.py:2 ")
