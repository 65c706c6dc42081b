"""Tables of many runs (``harness.load_runs``, ``bench table``, the end of ``bench sweep``).

``load_runs`` reads run folders into a pandas DataFrame, one row per run: what the run was
(dataset, protocol, model, backbone, augmentation, loss, size, seed, ...) and every scalar
metric. ``summarize`` groups the runs of one configuration (the columns of ``by``, within one
dataset and protocol) into one row: the mean and standard deviation over seeds of ``map`` and
each paper column, the number of runs and their seeds, and, for a method whose baseline (the
group whose model is the method's backbone, otherwise alike) is among the runs, the difference
of mean mAP ``Δ map = method − baseline`` with the two-level bootstrap interval of
``harness.compare``. ``render`` writes that table as Markdown, CSV, LaTeX, HTML or JSON, with
the leaderboard's escaping for each format.
"""

from __future__ import annotations

import csv
import glob
import html
import io
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from harness.errors import UserError
from harness.metrics import PAPER_COLUMNS
from harness.results import RESULT_FILE, RunRecord

RUN_COLUMNS = ("dataset", "protocol", "kind", "model", "backbone", "aug", "loss", "size", "seed", "init",
               "precision", "deviations")
"""The configuration columns of ``load_runs``, in order; ``--by`` chooses among them."""
FORMATS = ("md", "csv", "tex", "html", "json")
METRIC_KEYS = tuple(key.format(k=3) for key, _ in PAPER_COLUMNS)
_HEADERS = {key.format(k=3): column for key, column in PAPER_COLUMNS}


def run_folders(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    """The run folders named by ``paths``: run folders, folders holding run folders, or glob
    patterns of either; each folder once, in sorted order."""
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    found: list[Path] = []
    for item in items:
        text = str(item)
        matches = sorted(glob.glob(text)) if any(c in text for c in "*?[") else [text]
        if not matches:
            raise UserError(f"{text}: no file or folder matches; give run folders, a folder of runs or a glob")
        for match in map(Path, matches):
            if (match / RESULT_FILE).is_file():
                found.append(match)
            elif match.is_dir() and (runs := sorted(p.parent for p in match.glob(f"*/{RESULT_FILE}"))):
                found.extend(runs)
            elif match.name == RESULT_FILE or match.name == "scores.npz":
                found.append(match.parent)
            else:
                raise UserError(f"{match}: not a run folder (no {RESULT_FILE}) nor a folder holding run folders; "
                                "give finished runs")
    unique = sorted(set(found))
    if not unique:
        raise UserError("no runs given; give run folders, a folder of runs or a glob")
    return unique


def load_runs(paths: str | Path | Iterable[str | Path]) -> pd.DataFrame:
    """One row per run folder in ``paths`` (see ``run_folders``): ``path``, ``run_id``, the
    ``RUN_COLUMNS`` and every scalar metric of its ``result.json`` (fractions)."""
    from harness.comparison import training_facts

    rows = []
    for folder in run_folders(paths):
        record = RunRecord.read(folder, upgrade=True)
        facts = training_facts(record)
        row = {
            "path": str(folder),
            "run_id": record.run_id,
            "dataset": record.dataset.name,
            "protocol": record.protocol.name,
            "kind": record.kind,
            "model": record.model.name if record.model else record.fusion.label,
            "backbone": facts["backbone"] or (record.model.name if record.model else record.fusion.label),
            "aug": facts["augmentation"] or "",
            "loss": facts["loss"] or "",
            "size": str(facts["size"]),
            "seed": record.seed,
            "init": facts["init"] or "",
            "precision": record.precision or "",
            "deviations": facts["deviations"],
            "fingerprint": record.dataset.fingerprint,
        }
        row.update({key: value for key, value in record.metrics.items() if isinstance(value, (int, float))})
        rows.append(row)
    return pd.DataFrame(rows)


def summarize(runs: pd.DataFrame, by: Sequence[str] = ("model", "aug", "size"), *, n_bootstrap: int = 200,
              seed: int = 0) -> pd.DataFrame:
    """One row per configuration: ``dataset``, ``protocol``, the ``by`` columns, ``n``,
    ``seeds``, ``<metric>`` and ``<metric>_std`` (fractions; std with ddof 1, NaN for one run),
    and ``baseline``, ``delta_map``, ``delta_map_low``, ``delta_map_high`` (NaN without a
    baseline among the runs; the interval also without bootstrap resamples, ``n_bootstrap=0``)."""
    from harness.comparison import compare

    unknown = [column for column in by if column not in RUN_COLUMNS]
    if unknown or not by:
        raise UserError(f"--by {','.join(by)}: choose columns among {', '.join(RUN_COLUMNS)}")
    keys = list(dict.fromkeys(["dataset", "protocol", *by]))
    groups = runs.groupby(keys, sort=True, dropna=False)
    table = []
    for values, group in groups:
        row = dict(zip(keys, values))
        row["n"] = len(group)
        row["seeds"] = ",".join(str(s) for s in sorted(group["seed"].dropna().astype(int)))
        for key in METRIC_KEYS:
            row[key] = group[key].mean()
            row[f"{key}_std"] = group[key].std(ddof=1) if len(group) > 1 else math.nan
        row["paths"] = list(group["path"])
        row["backbones"] = set(group["backbone"])
        table.append(row)
    for row in table:
        row.update(baseline="", delta_map=math.nan, delta_map_low=math.nan, delta_map_high=math.nan)
        baseline = _baseline(row, table, keys)
        if baseline is None:
            continue
        row["baseline"] = baseline["model"]
        if n_bootstrap:
            result = compare(baseline["paths"], row["paths"], n_bootstrap=n_bootstrap, seed=seed, top=0)
            low, high = result.columns["map"]["interval"]
            row.update(delta_map=result.columns["map"]["diff"], delta_map_low=low, delta_map_high=high)
        else:
            row["delta_map"] = row["map"] - baseline["map"]
    frame = pd.DataFrame(table).drop(columns=["paths", "backbones"])
    return frame


def _baseline(row: dict, table: list[dict], keys: list[str]) -> dict | None:
    """The group of ``table`` that trains ``row``'s backbone alone, alike in every other key."""
    if "model" not in keys or len(row["backbones"]) != 1:
        return None
    backbone = next(iter(row["backbones"]))
    if backbone == row["model"]:
        return None
    for other in table:
        if other["model"] == backbone and all(other[k] == row[k] for k in keys if k != "model"):
            return other
    return None


def _percent(value: float, digits: int = 2, sign: bool = False) -> str:
    return "" if value is None or math.isnan(value) else f"{100 * value:{'+' if sign else ''}.{digits}f}"


def _display_rows(table: pd.DataFrame, by: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """Headers and text cells: the configuration, n, seeds, mean ± std per metric (percent) and Δ."""
    keys = list(dict.fromkeys(["dataset", "protocol", *by]))
    headers = [*keys, "n", "seeds", *(f"{_HEADERS[key]} ({key})" for key in METRIC_KEYS),
               "Δ map vs baseline [95%]"]
    rows = []
    for record in table.to_dict("records"):
        cells = [str(record[k]) for k in keys] + [str(record["n"]), record["seeds"]]
        for key in METRIC_KEYS:
            std = record[f"{key}_std"]
            cells.append(_percent(record[key]) + ("" if math.isnan(std) else f" ± {_percent(std)}"))
        delta = ""
        if record["baseline"]:
            delta = f"{_percent(record['delta_map'], sign=True)} vs {record['baseline']}"
            if not math.isnan(record["delta_map_low"]):
                delta += f" [{_percent(record['delta_map_low'], sign=True)}, {_percent(record['delta_map_high'], sign=True)}]"
        cells.append(delta)
        rows.append(cells)
    return headers, rows


def render(table: pd.DataFrame, by: Sequence[str], fmt: str) -> str:
    """``table`` (from ``summarize``) as ``md``, ``csv``, ``tex``, ``html`` or ``json`` text.
    Percentages with two decimals in all but JSON, which keeps ``summarize``'s fractions."""
    from harness.leaderboard.render import csv_escape, latex_escape, markdown_escape

    if fmt == "json":
        records = table.astype(object).where(table.notna(), None).to_dict("records")
        return json.dumps(records, indent=2) + "\n"
    if fmt == "csv":
        stream = io.StringIO()
        writer = csv.writer(stream, lineterminator="\n")
        columns = list(table.columns)
        writer.writerow(columns)
        for record in table.to_dict("records"):
            writer.writerow([csv_escape(_csv_cell(column, record[column])) for column in columns])
        return stream.getvalue()
    headers, rows = _display_rows(table, by)
    if fmt == "md":
        body = [[markdown_escape(cell) for cell in row] for row in rows]
        return tabulate(body, headers=[markdown_escape(h) for h in headers], tablefmt="github",
                        disable_numparse=True) + "\n"
    if fmt == "tex":
        lines = [r"\begin{tabular}{" + "l" * len(headers) + "}", r"\toprule",
                 " & ".join(latex_escape(h) for h in headers) + r" \\", r"\midrule"]
        lines += [" & ".join(latex_escape(cell) for cell in row) + r" \\" for row in rows]
        return "\n".join([*lines, r"\bottomrule", r"\end{tabular}"]) + "\n"
    if fmt == "html":
        head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>\n" for row in rows)
        return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>\n"
    raise UserError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")


def _csv_cell(column: str, value) -> str:
    """Metrics and Δ in percent with two decimals, empty when undefined; the rest as text."""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if column in METRIC_KEYS or column.endswith("_std") or column.startswith("delta_map"):
            return f"{100 * value:.2f}"
    return str(value)
