"""How records and comparisons show in a notebook or a REPL: one line as ``repr``, a small table as HTML.

Every string shown comes from a result file, which may come from anyone, so the HTML escapes
it. Metrics are shown as the tables show them: percentages with one decimal.
"""

from __future__ import annotations

import html
from typing import Any


def _percent(value: Any) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _signed_points(value: Any) -> str:
    return "-" if value is None else f"{100 * value:+.2f}"


def _what(record) -> str:
    """What a record trained or fused, in a few words."""
    if record.kind == "fusion":
        return f"{record.fusion.method} fusion of {len(record.members)} runs"
    return f"{record.model.name} {record.augmentation.name} {record.size}px seed {record.seed}"


def _deviations(record) -> str:
    return ", ".join(f"{name}={entry.get('used')}" for name, entry in record.protocol.deviations.items())


def record_line(record) -> str:
    """``RunRecord(<run id>: mAP 93.2, <what>, <dataset>, protocol <name> [deviations], <path>)``."""
    deviations = _deviations(record)
    parts = [f"mAP {_percent(record.metrics.get('map'))}", _what(record), record.dataset.name,
             f"protocol {record.protocol.name}" + (f" (deviations: {deviations})" if deviations else "")]
    if record.path is not None:
        parts.append(str(record.path))
    return f"RunRecord({record.run_id}: {', '.join(parts)})"


def _table(rows: list[tuple[str, str]]) -> str:
    cells = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td style='text-align:left'>{html.escape(v)}</td></tr>"
                    for k, v in rows)
    return f"<table>{cells}</table>"


def record_html(record) -> str:
    """The run id, what it trained, the protocol and its deviations, and the paper's metric columns."""
    from harness.metrics import PAPER_COLUMNS

    rows = [("run", record.run_id), ("what", _what(record)),
            ("dataset", f"{record.dataset.name} ({record.dataset.n_test} test images)"),
            ("protocol", f"{record.protocol.name} v{record.protocol.version}"),
            ("deviations", _deviations(record) or "none")]
    if record.path is not None:
        rows.append(("folder", str(record.path)))
    keys = [(key.format(k=3), column) for key, column in PAPER_COLUMNS]
    header = "".join(f"<th>{html.escape(column)}</th>" for _, column in keys)
    values = "".join(f"<td>{_percent(record.metrics.get(key))}</td>" for key, _ in keys)
    return f"{_table(rows)}<table><tr>{header}</tr><tr>{values}</tr></table>"


def comparison_line(comparison) -> str:
    """``Comparison(B − A: mAP +1.23 points [low, high], the interval excludes 0; differs in: …)``."""
    paired = comparison.paired
    low, high = paired["map_diff_interval"]
    verdict = "excludes 0" if comparison.excludes_zero else "includes 0"
    differs = ("training facts unknown" if comparison.differences is None else
               "differs in: " + (", ".join(d["field"] for d in comparison.differences) or "nothing recorded"))
    return (f"Comparison({comparison.run_b} − {comparison.run_a}: mAP {_signed_points(paired['map_diff'])} points "
            f"[{_signed_points(low)}, {_signed_points(high)}], the 95% interval {verdict}; {differs})")


def comparison_html(comparison) -> str:
    """mAP of both runs, the difference with its interval, what differs in training, and the classes that moved most."""
    paired = comparison.paired
    low, high = paired["map_diff_interval"]
    rows = [("A", comparison.run_a), ("B", comparison.run_b),
            ("mAP A, B", f"{_percent(paired['map_a'])}, {_percent(paired['map_b'])}"),
            ("mAP B − A (points)", f"{_signed_points(paired['map_diff'])} [{_signed_points(low)}, {_signed_points(high)}] "
                                   f"({'excludes' if comparison.excludes_zero else 'includes'} 0; {paired['n']} resamples)")]
    if comparison.differences is None:
        rows.append(("differs in", "unknown (a run has no result.json)"))
    else:
        rows += [(f"differs: {d['field']}", f"{d['a']} → {d['b']}") for d in comparison.differences] or [
            ("differs in", "nothing recorded")]
    rows += [(f"AP {c['name']}", f"{_percent(c['ap_a'])} → {_percent(c['ap_b'])} ({_signed_points(c['diff'])})")
             for c in comparison.largest_changes]
    return _table(rows)
