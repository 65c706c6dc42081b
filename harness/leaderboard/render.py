"""Leaderboard tables as Markdown, CSV and LaTeX, each with the escaping its format needs.

- Markdown (tabulate's ``github`` format, which escapes nothing): ``\\`` and ``|`` are
  backslash-escaped, so a cell can never end early, and so are ``< > [ ]``, so that free text
  (a plugin's backbone name) never becomes HTML or a link on GitHub; newlines become spaces.
- CSV (the ``csv`` module quotes as CSV needs): a cell starting with ``= + - @`` (or a tab or
  carriage return) that is not a number gets a leading ``'``, so a spreadsheet shows it
  as text instead of running it as a formula.
- LaTeX: ``\\ $ { } ~ ^ & % _ # < > |`` become their text-mode commands and the symbols the
  tables use (``± Δ − → ×``) math-mode ones; other non-ASCII letters stay UTF-8, which LaTeX
  reads by default since 2018.

Markdown and LaTeX keep the paper's columns (with the rank, the difference to the
same-backbone baseline and the number of runs) in the main table and list provenance below
it; CSV holds every column. HTML is in ``page.py``. Output depends on the tables only (no dates), so ``build --check``
can tell whether the committed files are stale.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from urllib.parse import quote

from tabulate import tabulate

from harness.leaderboard.rows import (
    BASELINE_DELTA,
    DEVIATIONS_SECTION,
    METRICS,
    PROTOCOL_SECTION,
    PROVENANCE,
    RANK,
    TEXT_COLUMNS,
    VERIFIED,
    Row,
)

SECTION_TITLES = {
    PROTOCOL_SECTION: "Rows under the protocol",
    DEVIATIONS_SECTION: "Rows with deviations from the protocol (never merged with protocol rows)",
}
NOTE = (
    "Metrics in percent (docs/METRICS.md): "
    + ", ".join(f"{label} = `{key}`" for key, label in METRICS)
    + "; top-3 predictions per image. Reproduced rows: mean ± sample standard deviation over their seeds "
    "(one run per seed). `verified`: re-trained by `bench leaderboard reproduce`, which gave the same result and "
    "scores; `self-reported`: not re-trained yet; `k of n verified`: k of the row's n seeds are. `rank`: by mAP within "
    "the section. `Δ mAP vs baseline`: a method row's mean mAP minus that of the baseline row of its backbone, loss, "
    "data, augmentation and size (for a fusion, the best baseline row it fuses), with a 95% interval from a "
    "bootstrap over both rows' seeds and the test images when each row has at least 2 seeds. "
    "`fingerprint`: the first 8 hex digits of the dataset's fingerprint."
)
PROVENANCE_TITLE = "Provenance of the reproduced rows"
MAIN_TEXT = ("backbone", "method", "aug", "loss", "size", "source", "verification")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_TEX = {
    "\\": r"\textbackslash{}", "$": r"\$", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "<": r"\textless{}",
    ">": r"\textgreater{}", "|": r"\textbar{}", "±": r"$\pm$", "Δ": r"$\Delta$", "−": r"$-$", "→": r"$\to$",
    "×": r"$\times$", "`": r"\textasciigrave{}",
}


@dataclass
class Table:
    """One leaderboard: a dataset under a protocol, its rows by section."""

    dataset: str
    protocol: str
    sections: dict[str, list[Row]]
    classes: list[str] = field(default_factory=list)
    remarks: list[str] = field(default_factory=list)  # what the note must add about this table's data

    @property
    def stem(self) -> str:
        return f"{self.dataset}-{self.protocol}"

    @property
    def title(self) -> str:
        return f"{self.dataset}, protocol {self.protocol}"

    def rows(self) -> list[Row]:
        return [row for rows in self.sections.values() for row in rows]

    def note(self) -> str:
        """``NOTE`` and this table's remarks."""
        return " ".join([NOTE, *self.remarks])

    def counts(self) -> dict[str, int]:
        """What the indexes show of a table: its reproduced, verified and deviating rows and runs."""
        reproduced = [r for r in self.rows() if r.kind == "reproduced"]
        return {"reproduced": len(reproduced), "verified": sum(r.text["verification"] == VERIFIED for r in reproduced),
                "deviating": len(self.sections.get(DEVIATIONS_SECTION, [])),
                "runs": sum(int(r.text["runs"]) for r in reproduced)}

    def provenance_rows(self) -> list[Row]:
        return [row for row in self.rows() if row.kind == "reproduced"]

    def notes(self) -> list[str]:
        return [" ".join(r.text[k] for k in ("backbone", "method", "aug", "size") if r.text[k] != "-") + f": {r.note}"
                for r in self.rows() if r.note]


def columns(section: str) -> list[str]:
    """The main table's headers of a section: rank, what and how, the metrics, the difference
    to the baseline, runs, and (deviations section) the deviations; provenance is elsewhere."""
    tail = ["runs", *(["deviations"] if section == DEVIATIONS_SECTION else [])]
    return [RANK, *MAIN_TEXT, *(label for _, label in METRICS), BASELINE_DELTA, *tail]


def row_label(row: Row) -> str:
    """``resnet101 baseline M1 448 bce``: what a row is, for provenance lists and the chart."""
    text = row.text
    parts = [text["backbone"], text["method"], text["aug"], text["size"], text["loss"]]
    label = " ".join(p for p in parts if p and p != "-")
    deviations = ", deviations" if row.section == DEVIATIONS_SECTION else ""
    return f"{label} ({text['verification']}{deviations})"


def bundle_link(path: str) -> str:
    """The link from ``tables/`` to a stored bundle (a path relative to the leaderboard root),
    percent-encoded so that no file name can break out of a link."""
    return "../" + quote(path, safe="/")


def safe_url(url: str) -> str:
    """A declared paper or code URL with every character that could end a link or an
    attribute percent-encoded."""
    return quote(url, safe=":/?#@!$&*+,;=%~")


def provenance_headers() -> list[str]:
    return ["row", *PROVENANCE, "bundles"]


def provenance_cells(row: Row) -> list[str]:
    """A reproduced row's provenance: its label, the ``PROVENANCE`` columns and its bundles."""
    seeds = row.text["seeds"].split(",")
    bundles = ", ".join(f"seed {seed}: {path}" for seed, path in zip(seeds, row.bundles))
    return [row_label(row), *(row.text.get(c, "") for c in PROVENANCE), bundles]


def metric_cell(row: Row, key: str) -> str:
    value = row.means.get(key)
    if value is None:
        return "-"
    if row.kind == "delta":
        return f"{value:+.1f}"
    std = row.stds.get(key)
    return f"{value:.1f} ± {std:.1f}" if std is not None else f"{value:.1f}"


def cells(row: Row, section: str) -> list[str]:
    """A row's cells in the order of ``columns(section)``."""
    rank = "" if row.rank is None else str(row.rank)
    tail = columns(section)[1 + len(MAIN_TEXT) + len(METRICS):]
    return [rank, *(row.text.get(c, "") for c in MAIN_TEXT), *(metric_cell(row, key) for key, _ in METRICS),
            *(row.text.get(c, "") for c in tail)]


_MARKDOWN = str.maketrans({char: "\\" + char for char in "\\|<>[]"})


def markdown_escape(text: str) -> str:
    return " ".join(text.splitlines()).translate(_MARKDOWN)


def csv_escape(text: str) -> str:
    if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


def latex_escape(text: str) -> str:
    return "".join(_TEX.get(char, char) for char in " ".join(text.splitlines()))


def markdown(table: Table) -> str:
    lines = [f"# {markdown_escape(table.title)}", "", table.note()]
    for section, rows in table.sections.items():
        if not rows:
            continue
        body = [[markdown_escape(c) for c in cells(r, section)] for r in rows]
        lines += ["", f"## {SECTION_TITLES[section]}", "",
                  tabulate(body, headers=columns(section), tablefmt="github", disable_numparse=True)]
    if table.provenance_rows():
        body = []
        for row in table.provenance_rows():
            values = [markdown_escape(c) for c in provenance_cells(row)[:-1]]
            links = [f"[seed {markdown_escape(seed)}]({bundle_link(path)})"
                     for seed, path in zip(row.text["seeds"].split(","), row.bundles)]
            links += [f"[{name}]({safe_url(url)})" for name, url in row.links.items()]
            body.append([*values, " ".join(links)])
        lines += ["", f"## {PROVENANCE_TITLE}", "",
                  tabulate(body, headers=[*provenance_headers()[:-1], "links"], tablefmt="github", disable_numparse=True)]
    if table.notes():
        lines += ["", "Notes:", "", *(f"- {markdown_escape(note)}" for note in table.notes())]
    return "\n".join(lines) + "\n"


def csv_text(table: Table) -> str:
    """Every row of every section, numbers as numbers (percent, two decimals)."""
    stream = io.StringIO()
    writer = csv.writer(stream, lineterminator="\n")
    metric_headers = [h for key, _ in METRICS for h in (key, f"{key}_std")]
    text = list(TEXT_COLUMNS)
    writer.writerow(["dataset", "protocol", "section", "row", *text[:7], *metric_headers, *text[7:], "note", RANK,
                     "baseline", "map_vs_baseline", "map_vs_baseline_low", "map_vs_baseline_high", "bundles"])
    for section, rows in table.sections.items():
        for row in rows:
            numbers = []
            for key, _ in METRICS:
                value, std = row.means.get(key), row.stds.get(key)
                numbers += ["" if value is None else f"{value:.2f}", "" if std is None else f"{std:.2f}"]
            values = [row.text.get(c, "") for c in text]
            delta, low, high, baseline = row.baseline_delta or (None, None, None, "")
            numbers_vs = ["" if v is None else f"{v:.2f}" for v in (delta, low, high)]
            extra = ["" if row.rank is None else str(row.rank), baseline, *numbers_vs, " ".join(row.bundles)]
            writer.writerow([csv_escape(c) for c in [table.dataset, table.protocol, section, row.kind, *values[:7],
                                                     *numbers, *values[7:], row.note, *extra]])
    return stream.getvalue()


def latex(table: Table) -> str:
    """A LaTeX fragment (booktabs): one tabular per non-empty section."""
    lines = [f"% {latex_escape(table.title)}. {latex_escape(table.note())}"]
    for section, rows in table.sections.items():
        if not rows:
            continue
        headers = columns(section)
        spec = "".join("r" if h in {label for _, label in METRICS} else "l" for h in headers)
        lines += [
            f"\\paragraph{{{latex_escape(SECTION_TITLES[section])}}}",
            f"\\begin{{tabular}}{{{spec}}}",
            r"\toprule",
            " & ".join(latex_escape(h) for h in headers) + r" \\",
            r"\midrule",
            *(" & ".join(latex_escape(c) for c in cells(row, section)) + r" \\" for row in rows),
            r"\bottomrule",
            r"\end{tabular}",
        ]
    if table.provenance_rows():
        headers = provenance_headers()
        lines += [
            f"\\paragraph{{{latex_escape(PROVENANCE_TITLE)}}}",
            f"\\begin{{tabular}}{{{'l' * len(headers)}}}",
            r"\toprule",
            " & ".join(latex_escape(h) for h in headers) + r" \\",
            r"\midrule",
            *(" & ".join(latex_escape(c) for c in provenance_cells(row)) + r" \\" for row in table.provenance_rows()),
            r"\bottomrule",
            r"\end{tabular}",
        ]
    return "\n".join(lines) + "\n"


def index_markdown(tables: list[Table], formats: tuple[str, ...]) -> str:
    """The Markdown index (leaderboards/tables/index.md): every table, its row counts and files."""
    lines = ["# Leaderboard tables", "", "Built by `bench leaderboard build` (leaderboards/README.md says how).", "",
             "| table | reproduced rows | verified rows | rows with deviations | runs | files |",
             "| --- | --- | --- | --- | --- | --- |"]
    for table in tables:
        counts = table.counts()
        files = ", ".join(f"[{fmt}]({table.stem}.{fmt})" for fmt in formats)
        lines.append(f"| {markdown_escape(table.title)} | {counts['reproduced']} | {counts['verified']} | "
                     f"{counts['deviating']} | {counts['runs']} | {files} |")
    return "\n".join(lines) + "\n"

