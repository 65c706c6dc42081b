"""The leaderboard's HTML pages: an index, one page per table, a per-class AP heatmap.

Pages are self-contained: inline CSS, an inline script (sort a table by the clicked column,
fold a row's provenance in and out, pick the heatmap's rows), and a Content-Security-Policy
that lets nothing be fetched. Every text is HTML-escaped; links to bundles and to declared
paper or code URLs are percent-encoded. A reproduced row, its difference to the paper and
its details row share one ``<tbody>``, so sorting moves them together. The main table holds
rank, the paper's columns, the difference to the same-backbone baseline, runs and
deviations, so it fits a 1,280 px screen; provenance (``rows.PROVENANCE``) and links sit in
a details row that each row's button shows. Backticks in prose become ``<code>``.
"""

from __future__ import annotations

import html
import re

from harness.leaderboard.render import SECTION_TITLES, Table, bundle_link, cells, columns, row_label, safe_url
from harness.leaderboard.rows import BASELINE_DELTA, METRICS, PROVENANCE, Row

# viridis at five stops: AP 0 (dark violet) to 1 (yellow)
HEAT_STOPS = ((0.0, (68, 1, 84)), (0.25, (59, 82, 139)), (0.5, (33, 145, 140)), (0.75, (94, 201, 98)),
              (1.0, (253, 231, 37)))
HEATMAP_SHOWN = 20  # rows shown at first; the picker shows the others
_CSS = (
    "body{font-family:sans-serif;margin:1em;color:#222}table{border-collapse:collapse;font-size:13px;margin-bottom:1em}"
    "th,td{border:1px solid #ccc;padding:2px 4px;text-align:right;white-space:nowrap}"
    "th{background:#eee;user-select:none}table.board th{cursor:pointer}"
    "th[aria-sort=descending]::after{content:' \\25BC'}"
    "th[aria-sort=ascending]::after{content:' \\25B2'}td.text,th.text{text-align:left}"
    "tr.paper{background:#f6f6f6}tr.delta{color:#555;font-style:italic}td small{color:#666}"
    "td.wrap{white-space:normal;min-width:10em;max-width:18em}"
    "tr.details td{text-align:left;white-space:normal;background:#fafafa;font-size:12px}"
    "button.toggle{font-size:11px;padding:0 4px}code{background:#f0f0f0;padding:0 2px}"
    ".badge{display:inline-block;border-radius:3px;padding:0 4px;font-size:11px;font-style:normal}"
    ".verified{background:#2e7d32;color:#fff}.self-reported{background:#ddd;color:#333}"
    ".partly-verified{background:#a5d6a7;color:#222}"
    ".deviation{background:#b26a00;color:#fff}figure{margin:1em 0}figcaption{font-weight:bold}"
    "table.heat{font-size:11px}table.heat td{border:1px solid #fff;padding:0;min-width:20px;height:12px}"
    "table.heat th{font-weight:normal;padding:0 3px;border:0;background:none}table.heat td.none{background:#ddd}"
    ".picker label{display:inline-block;margin:0 1em 2px 0;font-size:12px}"
    ".scale{display:inline-block;width:200px;height:10px;vertical-align:middle;"
    "background:linear-gradient(to right,#440154,#3b528b,#21918c,#5ec962,#fde725)}"
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
document.querySelectorAll("button.toggle").forEach(function (button) {
  button.addEventListener("click", function () {
    var details = button.closest("tbody").querySelector("tr.details");
    details.hidden = !details.hidden;
    button.setAttribute("aria-expanded", String(!details.hidden));
  });
});
document.querySelectorAll(".picker input").forEach(function (box) {
  box.addEventListener("change", function () {
    document.querySelectorAll('table.heat [data-column="' + box.value + '"]').forEach(function (cell) {
      cell.hidden = !box.checked;
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


def prose(text: str) -> str:
    """Prose as HTML: escaped, with Markdown's inline code (`like this`) as ``<code>``."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def _verification_class(value: str) -> str:
    return value if value in ("verified", "self-reported") else "partly-verified"


def _cell(header: str, value: str, row: Row, metric_keys: dict[str, str]) -> str:
    if header in metric_keys:
        number = row.means.get(metric_keys[header])
        sort = "" if number is None else f"{number:.6f}"
        mean, _, std = value.partition(" ± ")
        shown = html.escape(mean) + (f"<small> ± {html.escape(std)}</small>" if std else "")
        return f'<td data-sort="{sort}">{shown}</td>'
    if header == "rank":
        return f'<td data-sort="{html.escape(value)}">{html.escape(value)}</td>'
    if header == BASELINE_DELTA:
        delta, _, baseline = value.partition(" vs ")
        shown = html.escape(delta) + (f"<br><small>vs {html.escape(baseline)}</small>" if baseline else "")
        sort = "" if row.baseline_delta is None else f"{row.baseline_delta[0]:.6f}"
        return f'<td data-sort="{sort}">{shown}</td>'
    escaped, css = html.escape(value), "text"
    if header == "verification" and value:
        escaped = f'<span class="badge {_verification_class(value)}">{escaped}</span>'
    elif header == "deviations" and value:
        escaped, css = f'<span class="badge deviation">deviation</span> {escaped}', "text wrap"
    return f'<td class="{css}" data-sort="{html.escape(value, quote=True)}">{escaped}</td>'


def _links(row: Row) -> str:
    """A reproduced row's bundle per seed, and the paper and code its model declares."""
    seeds = row.text["seeds"].split(",")
    links = [f'<a href="{html.escape(bundle_link(path))}">seed {html.escape(seed)}</a>' for seed, path in zip(seeds, row.bundles)]
    links += [f'<a href="{html.escape(safe_url(url))}" rel="noopener noreferrer">{name}</a>' for name, url in row.links.items()]
    return " ".join(links)


def _details(row: Row, width: int) -> str:
    facts = " · ".join(f"<b>{html.escape(name)}</b> {html.escape(row.text.get(name, ''))}" for name in PROVENANCE)
    return f'<tr class="details" hidden><td colspan="{width}">{facts} · <b>bundles</b> {_links(row)}</td></tr>'


def _section(section: str, rows: list[Row]) -> str:
    headers = columns(section)
    metric_keys = {label: key for key, label in METRICS}
    numeric = {*metric_keys, "rank", BASELINE_DELTA}
    head = "".join(
        f'<th data-type="number">{html.escape(h)}</th>' if h in numeric else f'<th class="text">{html.escape(h)}</th>'
        for h in headers
    ) + '<th class="text">details</th>'
    groups: list[list[Row]] = []
    for row in rows:
        if row.kind == "delta" and groups:
            groups[-1].append(row)
        else:
            groups.append([row])
    body = []
    for group in groups:
        lines = []
        for row in group:
            toggle = ('<button class="toggle" type="button" aria-expanded="false">details</button>'
                      if row.kind == "reproduced" else "")
            lines.append(f'<tr class="{row.kind}">' + "".join(_cell(h, c, row, metric_keys) for h, c in zip(headers, cells(row, section)))
                         + f'<td class="text">{toggle}</td></tr>')
        lines += [_details(row, len(headers) + 1) for row in group if row.kind == "reproduced"]
        body.append("<tbody>" + "".join(lines) + "</tbody>")
    return (f"<h2>{html.escape(SECTION_TITLES[section])}</h2>\n"
            f'<table class="board" data-section="{section}"><thead><tr>{head}</tr></thead>\n' + "\n".join(body) + "\n</table>\n")


def heat_colour(ap: float) -> str:
    """The colour of an AP (fraction) on ``HEAT_STOPS``, linearly between stops."""
    ap = min(max(ap, 0.0), 1.0)
    for (x0, c0), (x1, c1) in zip(HEAT_STOPS, HEAT_STOPS[1:]):
        if ap <= x1:
            t = (ap - x0) / (x1 - x0)
            return "#" + "".join(f"{round(a + t * (b - a)):02x}" for a, b in zip(c0, c1))
    return "#fde725"


def ap_heatmap(classes: list[str], series: list[tuple[str, list[float | None]]]) -> str:
    """Per-class AP of several rows as a heatmap: one line per class, one column per row
    (numbered as in the picker), colour = AP, the value on hover; a picker of checkboxes
    shows or hides each row's column (the first ``HEATMAP_SHOWN`` are shown at first)."""
    picker = "".join(
        f'<label><input type="checkbox" value="{i}"{" checked" if i < HEATMAP_SHOWN else ""}> {i + 1}. {html.escape(label)}</label>'
        for i, (label, _) in enumerate(series))

    def hidden(i: int) -> str:
        return "" if i < HEATMAP_SHOWN else " hidden"

    head = "<th></th>" + "".join(f'<th data-column="{i}" title="{html.escape(label)}"{hidden(i)}>{i + 1}</th>'
                                 for i, (label, _) in enumerate(series))
    lines = []
    for c, name in enumerate(classes):
        row = [f'<th class="text">{html.escape(name)}</th>']
        for i, (label, ap) in enumerate(series):
            value = ap[c]
            if value is None:
                row.append(f'<td class="none" data-column="{i}" title="{html.escape(f"{label}: {name}: no positives")}"{hidden(i)}></td>')
            else:
                tip = html.escape(f"{label}: {name}: AP {100 * value:.1f}")
                row.append(f'<td data-column="{i}" data-ap="{100 * value:.1f}" style="background:{heat_colour(value)}" '
                           f'title="{tip}"{hidden(i)}></td>')
        lines.append("<tr>" + "".join(row) + "</tr>")
    scale = '<p>AP 0 <span class="scale"></span> 100 · grey: no positives · hover a cell for its value</p>'
    return (f'<div class="picker">{picker}</div>{scale}<table class="heat"><thead><tr>{head}</tr></thead><tbody>'
            + "\n".join(lines) + "</tbody></table>")


def table_page(table: Table) -> str:
    body = [f"<p><a href=\"index.html\">All tables</a></p>\n<h1>{html.escape(table.title)}</h1>\n<p>{prose(table.note())}</p>\n"]
    body += [_section(section, rows) for section, rows in table.sections.items() if rows]
    charted = [r for r in table.rows() if r.kind == "reproduced" and r.classes == table.classes and r.per_class_ap]
    if charted:
        series = [(row_label(r), r.per_class_ap) for r in charted]
        caption = f"Per-class AP of the {len(charted)} reproduced row(s), mean over each row’s runs; pick the rows to compare"
        body.append(f"<h2>Per-class average precision</h2>\n<figure><figcaption>{html.escape(caption)}</figcaption>"
                    f"{ap_heatmap(table.classes, series)}</figure>\n")
    if table.notes():
        body.append("<h2>Notes</h2><ul>" + "".join(f"<li>{prose(n)}</li>" for n in table.notes()) + "</ul>\n")
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
