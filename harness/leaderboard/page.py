"""The leaderboard's HTML pages: an index, one page per table, a per-class AP chart.

Pages are self-contained: inline CSS, an inline script that sorts a table by the clicked
column, an inline SVG chart, and a Content-Security-Policy that lets nothing be fetched.
Every text is HTML-escaped. A reproduced row and its difference to the paper share one
``<tbody>``, so sorting moves them together.
"""

from __future__ import annotations

import html

from harness.leaderboard.render import SECTION_TITLES, Table, cells, columns
from harness.leaderboard.rows import DEVIATIONS_SECTION, METRICS, Row

PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#eeca3b", "#9d755d", "#bab0ac",
           "#ff9da6")
_CSS = (
    "body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;font-size:13px;margin-bottom:1em}"
    "th,td{border:1px solid #ccc;padding:2px 6px;text-align:right;white-space:nowrap}"
    "th{cursor:pointer;background:#eee;user-select:none}th[aria-sort=descending]::after{content:' \\25BC'}"
    "th[aria-sort=ascending]::after{content:' \\25B2'}td.text,th.text{text-align:left}"
    "tr.paper{background:#f6f6f6}tr.delta{color:#555;font-style:italic}"
    ".badge{display:inline-block;border-radius:3px;padding:0 4px;font-size:11px;font-style:normal}"
    ".verified{background:#2e7d32;color:#fff}.self-reported{background:#ddd;color:#333}"
    ".deviation{background:#b26a00;color:#fff}figure{margin:1em 0}figcaption{font-weight:bold}"
)
_CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"
_SORT_SCRIPT = """
document.querySelectorAll("table.board").forEach(function (table) {
  var headers = table.tHead.rows[0].cells;
  function key(group, column) {
    var value = group.rows[0].cells[column].getAttribute("data-sort");
    if (value === null || value === "") return null;
    var number = Number(value);
    return isNaN(number) ? value : number;
  }
  Array.prototype.forEach.call(headers, function (header, column) {
    header.addEventListener("click", function () {
      var numeric = header.getAttribute("data-type") === "number";
      var current = header.getAttribute("aria-sort");
      var descending = current ? current === "ascending" : numeric;
      Array.prototype.forEach.call(headers, function (other) { other.removeAttribute("aria-sort"); });
      header.setAttribute("aria-sort", descending ? "descending" : "ascending");
      var groups = Array.prototype.slice.call(table.tBodies);
      groups.sort(function (a, b) {
        var x = key(a, column), y = key(b, column);
        if (x === null || y === null) return (x === null) - (y === null);
        var order = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
        return descending ? -order : order;
      });
      groups.forEach(function (group) { table.appendChild(group); });
    });
  });
});
"""


def _document(title: str, body: str, script: bool) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{_CSP}\"><link rel=\"icon\" href=\"data:,\">"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>\n{body}"
        + (f"<script>{_SORT_SCRIPT}</script>\n" if script else "")
        + "</body></html>\n"
    )


def row_label(row: Row) -> str:
    text = row.text
    parts = [text["backbone"], text["method"], text["aug"], text["size"], text["loss"]]
    label = " ".join(p for p in parts if p and p != "-")
    return f"{label} ({text['verification']}{', deviations' if row.section == DEVIATIONS_SECTION else ''})"


def _cell(header: str, value: str, row: Row, metric_keys: dict[str, str]) -> str:
    escaped = html.escape(value)
    if header in metric_keys:
        number = row.means.get(metric_keys[header])
        sort = "" if number is None else f"{number:.6f}"
        return f'<td data-sort="{sort}">{escaped}</td>'
    if header == "verification" and value:
        escaped = f'<span class="badge {html.escape(value)}">{escaped}</span>'
    elif header == "deviations" and value:
        escaped = f'<span class="badge deviation">deviation</span> {escaped}'
    return f'<td class="text" data-sort="{html.escape(value, quote=True)}">{escaped}</td>'


def _section(section: str, rows: list[Row]) -> str:
    headers = columns(section)
    metric_keys = {label: key for key, label in METRICS}
    head = "".join(
        f'<th data-type="number">{html.escape(h)}</th>' if h in metric_keys else f'<th class="text">{html.escape(h)}</th>'
        for h in headers
    )
    groups: list[list[Row]] = []
    for row in rows:
        if row.kind == "delta" and groups:
            groups[-1].append(row)
        else:
            groups.append([row])
    body = []
    for group in groups:
        lines = [f'<tr class="{row.kind}">' + "".join(_cell(h, c, row, metric_keys) for h, c in zip(headers, cells(row, section)))
                 + "</tr>" for row in group]
        body.append("<tbody>" + "".join(lines) + "</tbody>")
    return (f"<h2>{html.escape(SECTION_TITLES[section])}</h2>\n"
            f'<table class="board" data-section="{section}"><thead><tr>{head}</tr></thead>\n' + "\n".join(body) + "\n</table>\n")


def ap_chart(classes: list[str], series: list[tuple[str, list[float | None]]], width: int = 320) -> str:
    """Per-class AP of several rows side by side: one group of horizontal bars per class, one
    bar per row (colour in the legend), AP in percent at the end of each bar; inline SVG."""
    bar, gap, label_width = 9, 8, 12 + 7 * max((len(c) for c in classes), default=4)
    legend_height = 16 * len(series) + 6
    group = bar * len(series) + gap
    height = legend_height + group * len(classes)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_width + width + 60}" height="{height}" '
             'font-size="11" role="img">']
    for index, (label, _) in enumerate(series):
        y = 16 * index
        parts.append(f'<rect x="0" y="{y + 2}" width="12" height="10" fill="{PALETTE[index % len(PALETTE)]}"/>'
                     f'<text x="18" y="{y + 11}">{html.escape(label)}</text>')
    for c, name in enumerate(classes):
        top = legend_height + c * group
        parts.append(f'<text x="{label_width - 6}" y="{top + group / 2}" text-anchor="end">{html.escape(name)}</text>')
        for index, (label, ap) in enumerate(series):
            y, value = top + index * bar, ap[c]
            if value is None:
                parts.append(f'<text x="{label_width}" y="{y + bar - 1}" fill="#888" font-size="9">no positives</text>')
                continue
            length = round(width * value, 1)
            tip = html.escape(f"{label}: {name} AP {100 * value:.1f}")
            parts.append(f'<rect x="{label_width}" y="{y}" width="{length}" height="{bar - 1}" '
                         f'fill="{PALETTE[index % len(PALETTE)]}"><title>{tip}</title></rect>'
                         f'<text x="{label_width + length + 3}" y="{y + bar - 1}" font-size="9">{100 * value:.1f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def table_page(table: Table) -> str:
    body = [f"<p><a href=\"index.html\">All tables</a></p>\n<h1>{html.escape(table.title)}</h1>\n<p>{html.escape(table.note())}</p>\n"]
    body += [_section(section, rows) for section, rows in table.sections.items() if rows]
    charted = [r for r in table.rows() if r.kind == "reproduced" and r.classes == table.classes and r.per_class_ap]
    if charted:
        series = [(row_label(r), r.per_class_ap) for r in charted]
        body.append("<h2>Per-class average precision</h2>\n<figure><figcaption>"
                    f"{html.escape(f'Per-class AP of the {len(charted)} reproduced row(s), mean over each row’s runs')}"
                    f"</figcaption>{ap_chart(table.classes, series)}</figure>\n")
    if table.notes():
        body.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in table.notes()) + "</ul>\n")
    return _document(table.title, "".join(body), script=True)


def index_page(tables: list[Table], formats: tuple[str, ...]) -> str:
    rows = []
    for table in tables:
        counts = table.counts()
        others = " ".join(f'<a href="{html.escape(table.stem)}.{fmt}">{fmt}</a>' for fmt in formats if fmt != "html")
        rows.append(f'<tr><td class="text"><a href="{html.escape(table.stem)}.html">{html.escape(table.title)}</a></td>'
                    f"<td>{counts['reproduced']}</td><td>{counts['verified']}</td><td>{counts['deviating']}</td>"
                    f'<td class="text">{others}</td></tr>')
    body = ("<h1>Leaderboards</h1>\n<p>Built by <code>bench leaderboard build</code> from validated submissions "
            "and the paper's reported rows.</p>\n<table><thead><tr><th class=\"text\">table</th><th>reproduced rows</th>"
            "<th>verified</th><th>with deviations</th><th class=\"text\">other formats</th></tr></thead><tbody>\n"
            + "\n".join(rows) + "\n</tbody></table>\n")
    return _document("Leaderboards", body, script=False)
