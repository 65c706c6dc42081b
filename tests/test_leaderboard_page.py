"""The leaderboard's rows and page: one row per configuration whatever its seeds' verification,
ranks, the difference to the same-backbone baseline and its interval, links, prose."""

from __future__ import annotations

import csv
import html
import io
import re
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import unquote

import numpy as np
import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.leaderboard import render, submit
from harness.leaderboard.page import heat_colour, prose
from harness.leaderboard.rows import Row, declared_links, rank_rows
from harness.metrics import evaluate
from harness.registry import Registry
from runs import make_run
from test_leaderboard_submit import TOY_PLUGIN
from test_leaderboard_tables import md_rows, provenance_rows, verify_by_hand


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Registry:
    path = tmp_path_factory.mktemp("plugin") / "toy_plugin.py"
    path.write_text(TOY_PLUGIN)
    return Registry((str(path),))


def build(root) -> None:
    result = CliRunner().invoke(main, ["leaderboard", "build", "--leaderboards", str(root)])
    assert result.exit_code == 0, result.output


def table(root, fmt="md") -> str:
    return (root / "tables" / f"toy-wang2019.{fmt}").read_text(encoding="utf-8")


def test_a_verified_and_a_self_reported_seed_of_one_configuration_stay_one_row(tmp_path, registry):
    root = tmp_path / "lb"
    stored = [submit(make_run(tmp_path / "r", seed=s, run_files=True, score_seed=s), root, registry) for s in (0, 1, 2)]
    verify_by_hand(stored[1])
    build(root)
    rows = md_rows(table(root), render.SECTION_TITLES["protocol"])
    column = {name: rows[0].index(name) for name in rows[0]}
    (row,) = [r for r in rows[1:] if r[column["source"]] == "reproduced"]
    assert row[column["verification"]] == "1 of 3 verified" and row[column["runs"]] == "3"
    assert [r["seeds"] for r in provenance_rows(table(root))] == ["0,1,2"]
    (record,) = [r for r in csv.DictReader(io.StringIO(table(root, "csv"))) if r["row"] == "reproduced"]
    assert record["verification"] == "1 of 3 verified" and record["runs"] == "3"
    assert '<span class="badge partly-verified">1 of 3 verified</span>' in table(root, "html")
    assert "| toy, protocol wang2019 | 1 | 0 | 0 | 3 |" in (root / "tables" / "index.md").read_text()
    for bundle in stored:
        verify_by_hand(bundle)
    build(root)
    rows = md_rows(table(root), render.SECTION_TITLES["protocol"])
    assert [r[column["verification"]] for r in rows[1:] if r[column["source"]] == "reproduced"] == ["verified"]


def test_method_rows_show_their_difference_to_the_same_backbone_baseline_with_an_interval(tmp_path, registry):
    root = tmp_path / "lb"
    baseline = [make_run(tmp_path / "b", seed=s, run_files=True, score_seed=s) for s in (0, 1)]
    method = [make_run(tmp_path / "m", seed=s, model="csra", backbone="resnet101", run_files=True, score_seed=10 + s)
              for s in (0, 1)]
    for run in (*baseline, *method):
        submit(run, root, registry)
    build(root)
    rows = md_rows(table(root), render.SECTION_TITLES["protocol"])
    column = {name: rows[0].index(name) for name in rows[0]}
    shown = {r[column["method"]]: r for r in rows[1:] if r[column["source"]] == "reproduced"}
    maps = {name: np.mean([evaluate(*scores_and_labels(run))["map"] for run in runs]) * 100
            for name, runs in (("baseline", baseline), ("csra", method))}
    delta = maps["csra"] - maps["baseline"]
    text = shown["csra"][column[render.BASELINE_DELTA]]
    (record,) = [r for r in csv.DictReader(io.StringIO(table(root, "csv"))) if r["method"] == "csra"]
    assert record["baseline"] == "M1 448" and float(record["map_vs_baseline"]) == pytest.approx(delta, abs=0.006)
    low, high = float(record["map_vs_baseline_low"]), float(record["map_vs_baseline_high"])
    assert low < high and text == f"{delta:+.1f} \\[{low:+.1f}, {high:+.1f}\\] vs M1 448"  # Markdown escapes brackets
    assert shown["baseline"][column[render.BASELINE_DELTA]] == ""
    ranks = sorted(maps, key=maps.get, reverse=True)
    assert [shown[name][column["rank"]] for name in ranks] == ["1", "2"]


def scores_and_labels(run: Path):
    data = np.load(run / "scores.npz")
    return data["scores"], data["labels"]


def test_ranks_share_equal_shown_maps_and_skip_after_them():
    rows = [Row(kind="reproduced", section="protocol", text={}, means={"map": m}) for m in (80.0, 90.04, 89.96, 70.0)]
    rows.append(Row(kind="delta", section="protocol", text={}, means={"map": 1.0}))
    rows.append(Row(kind="paper", section="protocol", text={}, means={"map": None}))
    rank_rows(rows)
    assert [r.rank for r in rows] == [3, 1, 1, 4, None, None]


def test_declared_links_are_http_urls_only_and_read_defensively():
    model = SimpleNamespace(paper="https://arxiv.org/abs/1234.5678", code="javascript:alert(1)")
    assert declared_links(SimpleNamespace(model=model)) == {"paper": "https://arxiv.org/abs/1234.5678"}
    assert declared_links(SimpleNamespace(model=SimpleNamespace())) == {}
    assert declared_links(SimpleNamespace(model=None)) == {}
    assert render.safe_url('https://x.example/a"><script>') == "https://x.example/a%22%3E%3Cscript%3E"


def test_the_page_links_each_row_s_bundles_and_shows_prose_as_code(tmp_path, registry):
    root = tmp_path / "lb"
    stored = submit(make_run(tmp_path / "r", seed=0, run_files=True, run_id="a+b=c@d,e"), root, registry)
    build(root)
    page = table(root, "html")
    hrefs = re.findall(r'<a href="(\.\./submissions/[^"]+)">seed 0</a>', page)
    assert len(hrefs) == 1 and "%2B" in hrefs[0] and "%3D" in hrefs[0] and "@" not in hrefs[0]
    assert (root / "tables" / unquote(html.unescape(hrefs[0]))).resolve() == stored.path.resolve()
    note = re.search(r"<h1>.*?</h1>\n<p>(.*?)</p>", page, re.S)[1]
    assert "`" not in note and "<code>map</code>" in note
    assert prose("a `<b>` c") == "a <code>&lt;b&gt;</code> c"


def test_heat_colours_run_from_violet_to_yellow():
    assert (heat_colour(0.0), heat_colour(1.0), heat_colour(0.5)) == ("#440154", "#fde725", "#21918c")
    assert heat_colour(-1) == "#440154" and heat_colour(2) == "#fde725"
