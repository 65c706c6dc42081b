"""Leaderboards: validated submissions of run folders, and the tables built from them.

``submit`` accepts a finished run folder only when its ``result.json`` has the schema of
``harness.results``, its metrics are reproduced exactly by re-scoring its ``scores.npz``, its
protocol is known with the same hash as here, and (for datasets that declare one) its data
fingerprint is the canonical one. An accepted submission is stored as two files that are
never overwritten::

    leaderboards/submissions/<dataset>/<protocol>/<run-id>--<hash>.json   result.json + checks
    leaderboards/submissions/<dataset>/<protocol>/<run-id>--<hash>.npz    scores, compressed

``<hash>`` is the first 12 hex digits of the sha256 of the run's result.json and scores.npz,
so the same run cannot land twice while two runs of the same id (other machines) both can.
The scores are kept (``np.savez_compressed``; about 0.2 MB for VOC) so that every submission
can be re-scored when the metrics change.

``build_outputs`` turns the submissions into one table per dataset and protocol, in the
paper's layout, with the paper's own rows beside reproduced ones for protocol ``wang2019``.
The output depends on the submissions and baselines only (no dates), so ``--check`` can
tell whether committed tables are stale.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import math
import os
import statistics
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
from tabulate import tabulate

from harness import __version__
from harness.errors import UserError
from harness.metrics import METRICS_VERSION, evaluate
from harness.naming import safe_name
from harness.protocol import PROTOCOLS, protocol_by_hash
from harness.results import RESULT_FILE, RunRecord
from harness.rundir import SCORES_FILE, read_scores

SUBMISSIONS = "submissions"
TABLES = "tables"
FORMATS = ("md", "csv", "tex", "html")
RESCORE_TOLERANCE = 1e-9
BASELINES = Path(__file__).resolve().parents[1] / "baselines"
METRIC_COLUMNS = (
    ("map", "mAP"),
    ("cp_top3", "L-P"),
    ("cr_top3", "L-R"),
    ("cf1_top3", "L-F1"),
    ("op_top3", "O-P"),
    ("or_top3", "O-R"),
    ("of1_top3", "O-F1"),
)
METHOD_OF_AUGMENTATION = {"flip": "M1", "crop": "M2", "mixup": "M3"}
PAPER_PROTOCOL = "wang2019"
PAPER_BACKBONES = ("vgg16", "resnet101")
DELTA = "Δ reproduced − paper"

# --- submission -----------------------------------------------------------------------

def check_schema(record: Any, where: str) -> None:
    """Refuse (one line) a result record without the keys and types of the result format."""
    try:
        RunRecord.from_json(record, where)
    except UserError as error:
        raise UserError(str(error)) from None


def _same(stored: Any, recomputed: Any) -> bool:
    if isinstance(recomputed, list):
        return isinstance(stored, list) and len(stored) == len(recomputed) and all(map(_same, stored, recomputed))
    if recomputed is None or isinstance(recomputed, (bool, str)):
        return stored == recomputed
    if not isinstance(stored, (int, float)) or isinstance(stored, bool):
        return False
    if math.isnan(recomputed):
        return math.isnan(stored)
    return abs(stored - recomputed) <= RESCORE_TOLERANCE


def check_metrics(record: dict, scores: np.ndarray, labels: np.ndarray, where: str) -> None:
    """Refuse unless re-scoring the stored scores reproduces every stored metric exactly."""
    if record["metrics_version"] != METRICS_VERSION:
        raise UserError(
            f"{where}: scored with metrics version {record['metrics_version']}, this harness has "
            f"{METRICS_VERSION}; re-score the run with this harness before submitting"
        )
    recomputed = evaluate(scores, labels)
    stored = record["metrics"]
    for key, value in recomputed.items():
        if key not in stored:
            raise UserError(f"{where}: metrics.{key} is missing; re-score the run with this harness")
        if not _same(stored[key], value):
            shown = stored[key] if not isinstance(value, list) else "(list)"
            again = value if not isinstance(value, list) else "another list"
            raise UserError(
                f"{where}: metrics.{key} is {shown} but re-scoring {SCORES_FILE} gives {again}; "
                "the metrics must come from the submitted scores"
            )
    extra = sorted(set(stored) - set(recomputed))
    if extra:
        raise UserError(f"{where}: metrics.{extra[0]} is not a metric of metrics version {METRICS_VERSION}; remove it")


def check_protocol(record: dict, where: str) -> None:
    """Refuse a protocol this harness does not know, or one whose rules differ from its own."""
    block = record["protocol"]
    known = PROTOCOLS.get(block["name"])
    if known is None:
        raise UserError(f"{where}: unknown protocol {block['name']!r}; known: {', '.join(sorted(PROTOCOLS))}")
    if block["hash"] != known.hash or block["version"] != known.version:
        other = protocol_by_hash(block["hash"])
        hint = f" (that is the hash of {other.name!r})" if other else ""
        raise UserError(
            f"{where}: protocol {block['name']!r} has hash {block['hash']} version {block['version']}{hint}, but this "
            f"harness defines hash {known.hash} version {known.version}; the run followed other rules"
        )


def data_status(record: dict, canonical_fingerprint: str | None, where: str) -> str:
    """``canonical`` when the fingerprint is the dataset's canonical one; ``non-canonical`` when
    the dataset declares none (the row shows its coverage); refused when it declares another."""
    dataset = record["dataset"]
    if canonical_fingerprint is None:
        return "non-canonical"
    if dataset["fingerprint"] != canonical_fingerprint:
        raise UserError(
            f"{where}: dataset {dataset['name']!r} fingerprint {dataset['fingerprint']} (coverage "
            f"{100 * dataset['coverage']:.1f}%) is not the canonical {canonical_fingerprint}; "
            "leaderboards take runs on the complete official data only"
        )
    return "canonical"


def registry_canonical(plugins: Iterable[str] = ()) -> Callable[[str], str | None]:
    """A lookup of each dataset's declared canonical fingerprint through the plugin registry."""
    from harness.registry import Registry

    registry = Registry(tuple(plugins))
    return lambda name: registry.get("dataset", name).spec.canonical_fingerprint


def _new_file(path: Path, data: bytes) -> bool:
    """Create ``path`` with ``data`` atomically and only if it does not exist (hard link of a
    finished temporary file); False when it already exists."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.link(temporary, path)
        return True
    except FileExistsError:
        return False
    finally:
        Path(temporary).unlink(missing_ok=True)


def submit(run_dir: Path, root: Path, canonical_for: Callable[[str], str | None]) -> Path:
    """Validate ``run_dir`` and store it under ``root/submissions``; returns the stored JSON file.

    ``canonical_for(dataset_name)`` gives the dataset's canonical fingerprint or None (it
    raises ``UserError`` for an unknown dataset). Every refusal is one ``UserError`` line.
    """
    run_dir = Path(run_dir)
    result_path, scores_path = run_dir / RESULT_FILE, run_dir / SCORES_FILE
    if not result_path.is_file():
        raise UserError(f"{run_dir}: no {RESULT_FILE}; submit a finished run folder")
    result_bytes = result_path.read_bytes()
    try:
        record = json.loads(result_bytes)
    except json.JSONDecodeError as error:
        raise UserError(f"{result_path}: invalid JSON ({error})") from None
    check_schema(record, str(result_path))
    scores, labels, ids = read_scores(scores_path)
    dataset = record["dataset"]
    if scores.shape != (dataset["n_test"], len(dataset["classes"])):
        raise UserError(
            f"{scores_path}: scores have shape {scores.shape}, but {RESULT_FILE} declares "
            f"{dataset['n_test']} test images × {len(dataset['classes'])} classes"
        )
    check_protocol(record, str(result_path))
    check_metrics(record, scores, labels, str(result_path))
    status = data_status(record, canonical_for(dataset["name"]), str(result_path))

    digest = hashlib.sha256(result_bytes + scores_path.read_bytes()).hexdigest()
    folder = Path(root) / SUBMISSIONS / safe_name(dataset["name"]) / safe_name(record["protocol"]["name"])
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{safe_name(record['run_id'])}--{digest[:12]}"
    already = sorted(folder.glob(f"*--{digest[:12]}.json"))
    if already:
        raise UserError(f"{run_dir}: already submitted as {already[0]}")
    packed = io.BytesIO()
    np.savez_compressed(packed, scores=scores, labels=labels, ids=np.asarray([str(i) for i in ids]))
    entry = {
        "submission": {
            "content_sha256": digest,
            "scores_file": f"{stem}.npz",
            "data": status,
            "submitted": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "harness_version": __version__,
        },
        "result": record,
    }
    text = json.dumps(entry, indent=2) + "\n"
    if not _new_file(folder / f"{stem}.npz", packed.getvalue()) or not _new_file(folder / f"{stem}.json", text.encode()):
        raise UserError(f"{run_dir}: already submitted as {folder / stem}.json")
    return folder / f"{stem}.json"


# --- rows -----------------------------------------------------------------------------


def _plugin_id(block: dict | None) -> str:
    """``name version (plugin)``: what a row's component and its source are."""
    if not block:
        return "-"
    plugin = block.get("plugin", {})
    if plugin.get("distribution_version"):
        source = f"{plugin.get('distribution')} {plugin['distribution_version']}"
    elif plugin.get("sha256"):
        source = f"{Path(plugin.get('path') or plugin.get('name', '?')).name} sha256:{plugin['sha256'][:8]}"
    else:
        source = plugin.get("name", "?")
    return f"{block['name']} v{block['version']} ({source})"


def _size_order(size: str) -> tuple:
    return tuple(int(s) for s in size.split("+")) if size and size.replace("+", "").isdigit() else (math.inf,)


@dataclass
class Row:
    """One table row: the paper's values, a group of reproduced runs, or their difference."""

    backbone: str
    method: str
    size: str
    source: str
    values: dict[str, float | None]
    stds: dict[str, float | None] = field(default_factory=dict)
    runs: list[dict] = field(default_factory=list)
    note: str = ""

    @property
    def reproduced(self) -> bool:
        return bool(self.runs)

    def provenance(self) -> dict[str, str]:
        if not self.runs:
            return {}
        results = [run["result"] for run in self.runs]
        first = results[0]
        component = first.get("fusion") if first["kind"] == "fusion" else first.get("model")
        precisions = sorted({f"{r['precision']}{' +TF32' if r.get('tf32') else ''}" for r in results if r.get("precision")})
        devices = sorted({r.get("gpu") or {"cpu": "CPU", None: "-"}.get(r.get("device"), r.get("device")) for r in results})
        rates = [r["train_images_per_s"] for r in results if isinstance(r.get("train_images_per_s"), (int, float))]
        deviations = first["protocol"]["deviations"]
        coverage = first["dataset"]["coverage"]
        status = self.runs[0]["submission"]["data"]
        return {
            "runs": str(len(results)),
            "seeds": ",".join(str(s) for s in sorted({r.get("seed") for r in results}, key=lambda s: (s is None, s or 0))),
            "plugin": _plugin_id(component),
            "precision": ", ".join(precisions) or "-",
            "device": ", ".join(devices),
            "train img/s": f"{statistics.fmean(rates):.0f}" if rates else "-",
            "data": status if status == "canonical" else f"{status}, coverage {100 * coverage:.1f}%",
            "deviations": "; ".join(f"{k}: {v['protocol']} → {v['used']}" for k, v in sorted(deviations.items())),
        }


def _method_and_size(result: dict) -> tuple[str, str]:
    if result["kind"] == "fusion":
        sizes = sorted({m["size"] for m in result["members"] if m.get("size") is not None})
        return result["fusion"].get("label") or result["fusion"]["name"], "+".join(str(s) for s in sizes)
    augmentation = result["augmentation"]["name"]
    return METHOD_OF_AUGMENTATION.get(augmentation, augmentation), str(result["size"])


def _backbone(result: dict) -> str:
    if result.get("model"):
        return result["model"]["name"]
    return "+".join(sorted({m["model"] or "?" for m in result["members"]}))


def _group_key(entry: dict) -> str:
    """Runs that differ only in seed (and machine) share this key and become one row."""
    result = entry["result"]
    method, size = _method_and_size(result)
    key = {
        "backbone": _backbone(result),
        "method": method,
        "size": size,
        "fingerprint": result["dataset"]["fingerprint"],
        "protocol": result["protocol"]["hash"],
        "deviations": result["protocol"]["deviations"],
        "model": _plugin_id(result.get("model")),
        "pretrained": ((result.get("model") or {}).get("pretrained") or {}).get("mode"),
        "augmentation": _plugin_id(result.get("augmentation")),
        "precision": result.get("precision"),
        "tf32": result.get("tf32"),
    }
    if result["kind"] == "fusion":
        key["fusion"] = _plugin_id(result["fusion"])
        key["members"] = sorted((m["model"] or "", m["augmentation"] or "", m["size"] or 0) for m in result["members"])
    return json.dumps(key, sort_keys=True)


def reproduced_rows(entries: list[dict]) -> list[Row]:
    """One row per group of runs, with the mean and sample std (n ≥ 2) of each metric."""
    groups: dict[str, list[dict]] = {}
    for entry in entries:
        groups.setdefault(_group_key(entry), []).append(entry)
    rows = []
    for runs in groups.values():
        result = runs[0]["result"]
        method, size = _method_and_size(result)
        values, stds = {}, {}
        for key, _ in METRIC_COLUMNS:
            numbers = [100 * run["result"]["metrics"][key] for run in runs]
            values[key] = statistics.fmean(numbers)
            stds[key] = statistics.stdev(numbers) if len(numbers) > 1 else None
        rows.append(Row(_backbone(result), method, size, "reproduced", values, stds, runs))
    return rows


def paper_rows(baselines: Path, dataset: str) -> list[Row]:
    """The paper's rows for ``dataset`` from ``baselines/wang2019/table*.csv``, in paper order."""
    rows = []
    for path in sorted((Path(baselines) / "wang2019").glob("table*.csv")):
        with open(path, newline="") as stream:
            for record in csv.DictReader(stream):
                if record["dataset"] != dataset:
                    continue
                values = {key: float(record[key]) if record[key] else None for key, _ in METRIC_COLUMNS}
                rows.append(Row(record["backbone"], record["method"], record["size"], record["source"], values, note=record.get("note", "")))
    return rows


def _order(rows: list[Row]) -> list[Row]:
    methods = ("M1", "M2", "M3")
    return sorted(
        rows,
        key=lambda r: (
            r.backbone not in PAPER_BACKBONES,
            PAPER_BACKBONES.index(r.backbone) if r.backbone in PAPER_BACKBONES else 0,
            r.backbone,
            methods.index(r.method) if r.method in methods else len(methods),
            r.method,
            _size_order(r.size),
            r.size,
            json.dumps(r.provenance(), sort_keys=True),
        ),
    )


def _difference(reproduced: Row, paper: Row) -> Row:
    values = {
        key: reproduced.values[key] - paper.values[key] if paper.values[key] is not None else None
        for key, _ in METRIC_COLUMNS
    }
    return Row(reproduced.backbone, reproduced.method, reproduced.size, DELTA, values)


def _comparable_to_paper(row: Row) -> bool:
    """A difference to the paper means something only for runs without protocol deviations."""
    return all(not run["result"]["protocol"]["deviations"] for run in row.runs)


def table_rows(paper: list[Row], reproduced: list[Row]) -> list[Row]:
    """Paper rows in the paper's order per backbone, each followed by the reproduced rows it
    matches (backbone, method and size; an ensemble by method alone) and their differences;
    reproduced rows without a paper row follow their backbone's paper rows."""
    remaining = _order(reproduced)
    out: list[Row] = []
    backbones = list(dict.fromkeys([r.backbone for r in paper] + [r.backbone for r in remaining]))
    for backbone in backbones:
        for row in (p for p in paper if p.backbone == backbone):
            out.append(row)
            for match in [r for r in remaining if r.backbone == backbone and r.method == row.method and row.size in ("", r.size)]:
                remaining.remove(match)
                out.append(match)
                if _comparable_to_paper(match):
                    out.append(_difference(match, row))
        out += [r for r in remaining if r.backbone == backbone]
    return out


# --- rendering ------------------------------------------------------------------------

_PROVENANCE_COLUMNS = ("runs", "seeds", "plugin", "precision", "device", "train img/s", "data", "deviations")


def _cell(row: Row, key: str) -> str:
    value = row.values.get(key)
    if value is None:
        return "-"
    if row.source == DELTA:
        return f"{value:+.1f}"
    std = row.stds.get(key)
    return f"{value:.1f} ± {std:.1f}" if std is not None else f"{value:.1f}"


def _display(row: Row) -> list[str]:
    provenance = row.provenance()
    return [
        row.backbone,
        row.method,
        row.size or "-",
        row.source,
        *(_cell(row, key) for key, _ in METRIC_COLUMNS),
        *(provenance.get(column, "") for column in _PROVENANCE_COLUMNS),
    ]


_HEADERS = ["backbone", "method", "size", "source", *(label for _, label in METRIC_COLUMNS), *_PROVENANCE_COLUMNS]
_METRIC_NOTE = (
    "Metrics in percent (METRICS.md): "
    + ", ".join(f"{label} = `{key}`" for key, label in METRIC_COLUMNS)
    + "; top-3 predictions per image. Reproduced rows: mean ± sample standard deviation over runs that differ only in seed."
)


@dataclass
class Table:
    """One leaderboard: a dataset under a protocol."""

    dataset: str
    protocol: str
    rows: list[Row]
    classes: list[str]

    @property
    def stem(self) -> str:
        return f"{safe_name(self.dataset)}-{safe_name(self.protocol)}"

    @property
    def title(self) -> str:
        return f"{self.dataset}, protocol {self.protocol}"

    def notes(self) -> list[str]:
        return [" ".join(filter(None, (r.backbone, r.method, r.size))) + f": {r.note}" for r in self.rows if r.note]

    def markdown(self) -> str:
        lines = [f"# {self.title}", "", _METRIC_NOTE, "", tabulate([_display(r) for r in self.rows], headers=_HEADERS, tablefmt="github", disable_numparse=True)]
        if self.notes():
            lines += ["", "Notes:", "", *(f"- {note}" for note in self.notes())]
        return "\n".join(lines) + "\n"

    def csv(self) -> str:
        stream = io.StringIO()
        writer = csv.writer(stream, lineterminator="\n")
        metric_headers = [h for key, _ in METRIC_COLUMNS for h in (key, f"{key}_std")]
        writer.writerow(["dataset", "protocol", "backbone", "method", "size", "source", *metric_headers, *_PROVENANCE_COLUMNS, "note"])
        for row in self.rows:
            numbers = []
            for key, _ in METRIC_COLUMNS:
                value, std = row.values.get(key), row.stds.get(key)
                numbers += ["" if value is None else f"{value:.2f}", "" if std is None else f"{std:.2f}"]
            provenance = row.provenance()
            writer.writerow([self.dataset, self.protocol, row.backbone, row.method, row.size, row.source, *numbers,
                             *(provenance.get(c, "") for c in _PROVENANCE_COLUMNS), row.note])
        return stream.getvalue()

    def latex(self) -> str:
        def escape(text: str) -> str:
            for old, new in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                             ("±", r"$\pm$"), ("Δ", r"$\Delta$"), ("−", "--"), ("→", r"$\to$")):
                text = text.replace(old, new)
            return text

        lines = [
            f"% {self.title}; {_METRIC_NOTE}",
            r"\begin{tabular}{" + "llll" + "r" * len(METRIC_COLUMNS) + "l" * len(_PROVENANCE_COLUMNS) + "}",
            r"\toprule",
            " & ".join(escape(h) for h in _HEADERS) + r" \\",
            r"\midrule",
            *(" & ".join(escape(cell) for cell in _display(row)) + r" \\" for row in self.rows),
            r"\bottomrule",
            r"\end{tabular}",
        ]
        return "\n".join(lines) + "\n"

    def html(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in _HEADERS)
        body = []
        for row in self.rows:
            kind = "ours" if row.reproduced else "delta" if row.source == DELTA else "paper"
            body.append(f'<tr class="{kind}">' + "".join(f"<td>{html.escape(c)}</td>" for c in _display(row)) + "</tr>")
        charts = [
            f"<figure><figcaption>{html.escape(f'{r.backbone} {r.method} {r.size}: per-class AP, mean over {len(r.runs)} run(s)')}</figcaption>"
            f"{ap_chart(self.classes, _mean_per_class_ap(r.runs))}</figure>"
            for r in self.rows
            if r.reproduced
        ]
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in self.notes())
        return (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head><body>\n"
            f"<h1>{html.escape(self.title)}</h1>\n<p>{html.escape(_METRIC_NOTE)}</p>\n"
            f"<table><thead><tr>{head}</tr></thead><tbody>\n" + "\n".join(body) + "\n</tbody></table>\n"
            + (f"<h2>Notes</h2><ul>{notes}</ul>\n" if notes else "")
            + (f"<h2>Per-class average precision</h2>\n" + "\n".join(charts) + "\n" if charts else "")
            + "</body></html>\n"
        )


_CSS = (
    "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;font-size:13px}"
    "th,td{border:1px solid #ccc;padding:2px 6px;text-align:right;white-space:nowrap}"
    "td:nth-child(-n+4),th:nth-child(-n+4){text-align:left}tr.paper{background:#f3f3f3}"
    "tr.delta{color:#555;font-style:italic}figure{margin:1em 0}figcaption{font-weight:bold}"
)


def _mean_per_class_ap(runs: list[dict]) -> list[float | None]:
    per_run = [run["result"]["metrics"]["per_class_ap"] for run in runs]
    means = []
    for values in zip(*per_run):
        present = [v for v in values if v is not None]
        means.append(statistics.fmean(present) if present else None)
    return means


def ap_chart(classes: list[str], ap: list[float | None], width: int = 360) -> str:
    """A horizontal inline-SVG bar chart of per-class AP (percent); no plotting library needed."""
    bar, label_width, gap = 14, 9 + 7 * max((len(c) for c in classes), default=1), 2
    height = len(classes) * (bar + gap)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_width + width + 50}" height="{height}" font-size="11" role="img">']
    for index, (name, value) in enumerate(zip(classes, ap)):
        y = index * (bar + gap)
        parts.append(f'<text x="{label_width - 4}" y="{y + bar - 3}" text-anchor="end">{html.escape(name)}</text>')
        if value is None:
            parts.append(f'<text x="{label_width}" y="{y + bar - 3}" fill="#888">no positives</text>')
            continue
        length = round(width * value, 1)
        parts.append(f'<rect x="{label_width}" y="{y}" width="{length}" height="{bar}" fill="#4c78a8"/>')
        parts.append(f'<text x="{label_width + length + 3}" y="{y + bar - 3}">{100 * value:.1f}</text>')
    parts.append("</svg>")
    return "".join(parts)


# --- building -------------------------------------------------------------------------


def load_submissions(root: Path) -> list[dict]:
    """Every stored submission under ``root/submissions``, in file-name order."""
    entries = []
    for path in sorted((Path(root) / SUBMISSIONS).glob("*/*/*.json")):
        try:
            entry = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise UserError(f"{path}: invalid JSON ({error}); restore it from version control") from None
        entries.append(entry)
    return entries


def build_tables(root: Path, baselines: Path = BASELINES) -> list[Table]:
    """One table per (dataset, protocol) with submissions, plus the paper's datasets under
    ``wang2019`` so that its reference rows are always there."""
    entries = load_submissions(root)
    keys: dict[tuple[str, str], list[dict]] = {}
    paper_datasets = set()
    for path in sorted((Path(baselines) / "wang2019").glob("table*.csv")):
        with open(path, newline="") as stream:
            paper_datasets |= {record["dataset"] for record in csv.DictReader(stream)}
    for dataset in sorted(paper_datasets):
        keys[(dataset, PAPER_PROTOCOL)] = []
    for entry in entries:
        result = entry["result"]
        keys.setdefault((result["dataset"]["name"], result["protocol"]["name"]), []).append(entry)
    tables = []
    for (dataset, protocol), group in sorted(keys.items()):
        paper = paper_rows(baselines, dataset) if protocol == PAPER_PROTOCOL else []
        classes = group[0]["result"]["dataset"]["classes"] if group else []
        tables.append(Table(dataset, protocol, table_rows(paper, reproduced_rows(group)), classes))
    return tables


def _readme(tables: list[Table], formats: tuple[str, ...]) -> str:
    lines = [
        "# Leaderboards",
        "",
        "Generated by `bench leaderboard build` from `submissions/` (accepted by `bench leaderboard submit`)",
        "and from the paper's numbers in `baselines/wang2019/`. Do not edit by hand:",
        "`bench leaderboard build --check` fails when these files are stale (run it in CI).",
        "",
        "A submission is accepted only when its metrics are reproduced exactly by re-scoring its",
        "`scores.npz`, its protocol hash matches this harness, and its data fingerprint is the",
        "canonical one for datasets that declare it (rows on other data say `non-canonical` and",
        "their coverage). Rows that differ only in seed are one row: mean ± sample std.",
        "",
        "| table | reproduced rows | runs | files |",
        "| --- | --- | --- | --- |",
    ]
    for table in tables:
        reproduced = [r for r in table.rows if r.reproduced]
        files = ", ".join(f"[{fmt}]({TABLES}/{table.stem}.{fmt})" for fmt in formats)
        lines.append(f"| {table.title} | {len(reproduced)} | {sum(len(r.runs) for r in reproduced)} | {files} |")
    return "\n".join(lines) + "\n"


def build_outputs(root: Path, formats: Iterable[str] = FORMATS, baselines: Path = BASELINES) -> dict[str, str]:
    """Every generated file's text by its path relative to ``root``: the tables and README.md."""
    formats = tuple(formats)
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise UserError(f"unknown format {unknown[0]!r}; choose from {', '.join(FORMATS)}")
    tables = build_tables(root, baselines)
    render = {"md": Table.markdown, "csv": Table.csv, "tex": Table.latex, "html": Table.html}
    outputs = {f"{TABLES}/{t.stem}.{fmt}": render[fmt](t) for t in tables for fmt in formats}
    outputs["README.md"] = _readme(tables, formats)
    return outputs


def stale_files(root: Path, outputs: dict[str, str], formats: Iterable[str] = FORMATS) -> list[str]:
    """Generated files that differ from ``outputs``, are missing, or would no longer be generated."""
    root = Path(root)
    stale = [f"{name} (missing)" if not (root / name).is_file() else f"{name} (changed)"
             for name, text in outputs.items()
             if not (root / name).is_file() or (root / name).read_text() != text]
    for fmt in formats:
        for path in sorted((root / TABLES).glob(f"*.{fmt}")):
            name = path.relative_to(root).as_posix()
            if name not in outputs:
                stale.append(f"{name} (no longer generated)")
    return stale


def write_outputs(root: Path, outputs: dict[str, str], formats: Iterable[str] = FORMATS) -> list[str]:
    """Write ``outputs`` under ``root`` and delete generated tables no longer produced; returns
    the paths that changed."""
    root = Path(root)
    changed = stale_files(root, outputs, formats)
    for name, text in outputs.items():
        path = root / name
        if not path.is_file() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    for entry in changed:
        if entry.endswith("(no longer generated)"):
            (root / entry.split(" ")[0]).unlink()
    return changed
