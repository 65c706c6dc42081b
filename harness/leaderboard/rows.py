"""Table rows: stored submissions grouped into rows with pandas, beside the paper's rows.

One DataFrame row per submission holds its configuration as columns (``CONFIGURATION``:
everything that defines what was trained and how, and on which data, except the seed) and
its metrics in percent. Submissions that share every configuration column and their
verification status are one row: mean ± sample standard deviation over their seeds (a
configuration and seed is stored at most once, so the number of runs is the number of
distinct seeds). Verified and self-reported seeds of one configuration stay one row, which
says how many of its seeds are verified. Every row shows the first 8 hex digits of its
dataset fingerprint and links its stored bundles. Rows with deviations from the protocol go
to their own section; the paper's rows and, for canonical rows that match one, the
difference to it, stay in the protocol section. Rows with an mAP are ranked by it within
their section (``rank_rows``).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from harness.metrics import PAPER_COLUMNS
from harness.naming import canonical_json
from harness.recipes import DEFAULT_RECIPE
from harness.results import ComponentRecord, RunRecord

TOP_K = 3
METRICS = tuple((key.format(k=TOP_K), label) for key, label in PAPER_COLUMNS)
AUGMENTATION_LABELS = {"flip": "M1", "crop": "M2", "mixup": "M3"}
BASELINE = "baseline"
PAPER_PROTOCOL = "wang2019"
PAPER_BACKBONES = ("vgg16", "resnet101")
PROTOCOL_SECTION, DEVIATIONS_SECTION = "protocol", "deviations"
DELTA = "Δ reproduced − paper"
VERIFIED, SELF_REPORTED = "verified", "self-reported"
# The columns that say what was trained; rows never merge across any of them.
CONFIGURATION = ("kind", "dataset", "fingerprint", "coverage", "n_train", "protocol", "protocol_hash", "deviations",
                 "backbone", "method", "aug", "loss", "size", "model", "pretrained", "augmentation", "loss_component",
                 "precision", "pipeline", "fusion", "members", "recipe")
TEXT_COLUMNS = ("backbone", "method", "aug", "loss", "size", "source", "verification", "seeds", "runs", "plugin",
                "precision", "pipeline", "device", "data", "fingerprint", "deviations")
RANK = "rank"
BASELINE_DELTA = "Δ mAP vs baseline"
# What a row was built with and on: below the main table (Markdown, LaTeX) or folded (HTML).
PROVENANCE = ("seeds", "plugin", "precision", "pipeline", "device", "data", "fingerprint")
CANONICAL = "canonical"
SHORT_FINGERPRINT = 8


@dataclass
class Row:
    """One table row: ``kind`` is paper, reproduced or delta; ``text`` holds every non-metric
    column as shown; ``means`` and ``stds`` are percentages (None where undefined)."""

    kind: str
    section: str
    text: dict[str, str]
    means: dict[str, float | None]
    stds: dict[str, float | None] = field(default_factory=dict)
    note: str = ""
    classes: list[str] = field(default_factory=list)
    per_class_ap: list[float | None] | None = None
    rank: int | None = None
    bundles: list[str] = field(default_factory=list)  # stored bundle files, relative to the leaderboard root
    links: dict[str, str] = field(default_factory=dict)  # "paper" / "code": URLs the model plugin declares
    # a method row's difference to its baseline: delta, low, high (percent; no interval: None), baseline
    baseline_delta: tuple[float, float | None, float | None, str] | None = None


def component_id(component: ComponentRecord | None) -> str:
    """``name vVERSION (source)``: a distribution by name and version, a file by its hash."""
    if component is None:
        return "-"
    plugin = component.plugin
    if plugin.distribution_version:
        source = f"{plugin.distribution} {plugin.distribution_version}"
    elif plugin.sha256:
        source = f"{Path(plugin.path or plugin.name).name} sha256:{plugin.sha256[:8]}"
    else:
        source = plugin.name
    return f"{component.name} v{component.version} ({source})"


def recipe_id(record: RunRecord) -> str:
    """The recipe a row trained with: empty for the protocol's built-in ``sgd-step`` (and for
    records written before recipes, which trained with it), else its ``component_id``."""
    recipe = record.recipe
    if recipe is None or (recipe.name == DEFAULT_RECIPE and recipe.plugin.source == "built-in"):
        return ""
    return component_id(recipe)


def backbone_and_method(record: RunRecord) -> tuple[str, str]:
    """A plugin model with a ``backbone`` is the method on that backbone; a model without one
    is a baseline of its own name; a fusion is its ensemble label."""
    if record.model is not None:
        backbone = record.model.backbone or record.model.name
        method = record.model.name if record.model.backbone else BASELINE
    else:
        backbone, method = "+".join(sorted({m.model or "?" for m in record.members})), BASELINE
    return (backbone, record.fusion.label) if record.kind == "fusion" else (backbone, method)


def _augmentation_label(name: str | None) -> str:
    return AUGMENTATION_LABELS.get(name, name or "-")


def seed_label(record: RunRecord) -> str:
    """The seed of a trained run; the members' seeds of a fusion (``0``, ``0+1``)."""
    if record.kind == "fusion":
        return "+".join(str(s) for s in sorted({m.seed for m in record.members if m.seed is not None}))
    return str(record.seed)


def configuration(record: RunRecord) -> dict[str, str]:
    """The ``CONFIGURATION`` columns of a record, as strings."""
    backbone, method = backbone_and_method(record)
    if record.kind == "fusion":
        labels = sorted({_augmentation_label(m.augmentation) for m in record.members})
        sizes = sorted({m.size for m in record.members if m.size is not None})
        aug, size = "+".join(labels), "+".join(str(s) for s in sizes)
        members = canonical_json(sorted([m.model, m.augmentation, m.size] for m in record.members))
        fusion = f"{component_id(record.fusion)} {record.fusion.label}"
    else:
        aug, size, members, fusion = _augmentation_label(record.augmentation.name), str(record.size), "", ""
    pretrained = record.model.pretrained if record.model else None
    return {
        "kind": record.kind,
        "dataset": record.dataset.name,
        "fingerprint": record.dataset.fingerprint,
        "coverage": repr(record.dataset.coverage),
        "n_train": str(record.dataset.n_train),
        "protocol": record.protocol.name,
        "protocol_hash": record.protocol.hash,
        "deviations": canonical_json(record.protocol.deviations),
        "backbone": backbone,
        "method": method,
        "aug": aug,
        "loss": record.loss.name if record.loss else "-",
        "size": size,
        "model": component_id(record.model),
        "pretrained": canonical_json([pretrained.mode, sorted(f.sha256 for f in pretrained.files)]) if pretrained else "",
        "augmentation": component_id(record.augmentation),
        "loss_component": component_id(record.loss),
        "precision": f"{record.precision}{' +TF32' if record.tf32 else ''}" if record.precision else "-",
        "pipeline": str(record.pipeline.get("version", "-")),
        "fusion": fusion,
        "members": members,
        "recipe": recipe_id(record),
    }


def declared_links(record: RunRecord) -> dict[str, str]:
    """The ``paper`` and ``code`` URLs the run's model declares, where present and http(s);
    read defensively, since older results have no such fields."""
    links = {}
    for name in ("paper", "code"):
        url = getattr(record.model, name, None) if record.model is not None else None
        if isinstance(url, str) and url.startswith(("https://", "http://")) and not any(c.isspace() for c in url):
            links[name] = url
    return links


def submission_row(record: RunRecord, data: str, bundle: str) -> dict:
    """What a table shows of one submission (``record``, its data status, its bundle file
    relative to the leaderboard root), as JSON values: configuration columns, seed, metrics in
    percent, per-class AP, device, plugin and links; the verification is added per build."""
    row = {**configuration(record), "data": data, "seed": seed_label(record), "bundle": bundle,
           "links": declared_links(record),
           "device": record.gpu or ("CPU" if record.device == "cpu" else record.device or "-"),
           "classes": list(record.dataset.classes),
           "per_class_ap": record.metrics.get("per_class_ap"),
           "plugin": component_id(record.fusion if record.kind == "fusion" else record.model)}
    row.update({key: 100 * record.metrics[key] for key, _ in METRICS})
    return row


def submission_frame(rows: list[dict]) -> pd.DataFrame:
    """One row per submission: ``submission_row`` with its ``verification``."""
    return pd.DataFrame(rows)


def _seed_order(seed: str) -> tuple:
    return tuple(int(part) for part in seed.split("+") if part.isdigit())


def _mean_ap(values: list[list[float | None]]) -> list[float | None]:
    table = np.array([[math.nan if v is None else v for v in ap] for ap in values], dtype=float)
    present = ~np.isnan(table)
    counts = present.sum(axis=0)
    sums = np.where(present, table, 0.0).sum(axis=0)
    return [float(s / n) if n else None for s, n in zip(sums, counts)]


def reproduced_rows(frame: pd.DataFrame) -> list[Row]:
    """The grouped rows: mean and sample std (n ≥ 2) of every paper column per group."""
    if frame.empty:
        return []
    rows = []
    keys = [*CONFIGURATION, "data"]
    for _, group in frame.groupby(keys, sort=False, dropna=False):
        group = group.iloc[sorted(range(len(group)), key=lambda i: _seed_order(group["seed"].iloc[i]))]
        first = group.iloc[0]
        means = group[[key for key, _ in METRICS]].mean()
        stds = group[[key for key, _ in METRICS]].std(ddof=1)
        deviations = first["deviations"]
        coverage = float(first["coverage"])
        data = first["data"] if first["data"] == CANONICAL else f"{first['data']}, coverage {100 * coverage:.1f}%"
        text = {
            "backbone": first["backbone"], "method": first["method"], "aug": first["aug"], "loss": first["loss"],
            "size": first["size"], "source": "reproduced", "verification": verification_text(list(group["verification"])),
            "seeds": ",".join(group["seed"]), "runs": str(len(group)),
            "plugin": first["plugin"], "precision": first["precision"], "pipeline": first["pipeline"],
            "device": ", ".join(sorted(set(group["device"]))),
            "data": data, "fingerprint": first["fingerprint"][:SHORT_FINGERPRINT],
            "deviations": describe_deviations(deviations),
        }
        rows.append(Row(
            kind="reproduced",
            section=DEVIATIONS_SECTION if deviations != "{}" else PROTOCOL_SECTION,
            text=text,
            means={key: float(means[key]) for key, _ in METRICS},
            stds={key: None if math.isnan(stds[key]) else float(stds[key]) for key, _ in METRICS},
            classes=first["classes"],
            per_class_ap=_mean_ap(list(group["per_class_ap"])),
            bundles=list(group["bundle"]),
            links=first["links"],
        ))
    return sorted(rows, key=_row_order)


def verification_text(statuses: list[str]) -> str:
    """``verified`` when every seed of a row is, ``self-reported`` when none is, else
    ``k of n verified``: one configuration is one row whatever its seeds' status."""
    verified = statuses.count(VERIFIED)
    if verified == len(statuses):
        return VERIFIED
    return SELF_REPORTED if verified == 0 else f"{verified} of {len(statuses)} {VERIFIED}"


def rank_rows(rows: list[Row]) -> None:
    """Set ``rank`` on every paper and reproduced row with an mAP: 1 for the highest mAP of the
    section, equal mAPs (to the shown 0.1) sharing a rank, the next rank skipping as many."""
    ranked = [row for row in rows if row.kind != "delta" and row.means.get("map") is not None]
    shown = sorted((round(row.means["map"], 1) for row in ranked), reverse=True)
    for row in ranked:
        row.rank = shown.index(round(row.means["map"], 1)) + 1


def describe_deviations(deviations_json: str) -> str:
    """``epochs: 20 → 2; sizes: 32, 48, 64, 96, 128 → 40``: each deviation, protocol value → value used."""
    deviations = json.loads(deviations_json)
    return "; ".join(f"{name}: {_short(d['protocol'])} → {_short(d['used'])}" for name, d in sorted(deviations.items()))


def _short(value) -> str:
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


def _size_order(size: str) -> tuple:
    parts = size.split("+")
    return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else (math.inf,)


def _row_order(row: Row) -> tuple:
    text = row.text
    methods = ("M1", "M2", "M3")
    return (
        text["backbone"] not in PAPER_BACKBONES,
        PAPER_BACKBONES.index(text["backbone"]) if text["backbone"] in PAPER_BACKBONES else 0,
        text["backbone"], text["method"] != BASELINE, text["method"],
        methods.index(text["aug"]) if text["aug"] in methods else len(methods), text["aug"],
        _size_order(text["size"]), text["size"], text["loss"], text["verification"], text["deviations"],
        canonical_json(text),
    )


def paper_records(baselines: Path) -> list[dict[str, str]]:
    """Every row of ``baselines/wang2019/table*.csv``, in file and paper order."""
    records = []
    for path in sorted((Path(baselines) / PAPER_PROTOCOL).glob("table*.csv")):
        with open(path, newline="") as stream:
            records += list(csv.DictReader(stream))
    return records


def paper_rows(baselines: Path, dataset: str) -> list[Row]:
    """The paper's rows for ``dataset``, in paper order. Table 2's M1–M3 are the baseline with
    that augmentation; Table 3 rows are methods."""
    rows = []
    for record in paper_records(baselines):
        if record["dataset"] != dataset:
            continue
        single = record["method"] in AUGMENTATION_LABELS.values()
        text = {
            "backbone": record["backbone"], "method": BASELINE if single else record["method"],
            "aug": record["method"] if single else "-", "loss": "bce" if not record["reference"] else "-",
            "size": record["size"] or "-", "source": record["source"],
        }
        means = {key: float(record[key]) if record[key] else None for key, _ in METRICS}
        rows.append(Row(kind="paper", section=PROTOCOL_SECTION, text=text, means=means, note=record["note"]))
    return rows


def _matches(paper: Row, row: Row) -> bool:
    """A canonical reproduced row of the paper row's backbone, method, augmentation and size:
    only a run on the complete official data is compared with the paper."""
    a, b = paper.text, row.text
    if b["data"] != CANONICAL or a["backbone"] != b["backbone"] or a["method"] != b["method"]:
        return False
    return all(a[k] in ("-", b[k]) for k in ("aug", "size"))


def _difference(row: Row, paper: Row) -> Row:
    means = {key: None if paper.means[key] is None else row.means[key] - paper.means[key] for key, _ in METRICS}
    text = {k: row.text[k] for k in ("backbone", "method", "aug", "loss", "size")} | {"source": DELTA}
    return Row(kind="delta", section=PROTOCOL_SECTION, text=text, means=means)


def protocol_section(paper: list[Row], reproduced: list[Row]) -> list[Row]:
    """Paper rows in the paper's order per backbone, each followed by the canonical reproduced
    rows that match it and their difference to it; other reproduced rows after their backbone's."""
    remaining = list(reproduced)
    out: list[Row] = []
    backbones = list(dict.fromkeys([r.text["backbone"] for r in paper] + [r.text["backbone"] for r in remaining]))
    for backbone in backbones:
        for row in (p for p in paper if p.text["backbone"] == backbone):
            out.append(row)
            for match in [r for r in remaining if _matches(row, r)]:
                remaining.remove(match)
                out += [match, _difference(match, row)]
        out += [r for r in remaining if r.text["backbone"] == backbone]
    return out
