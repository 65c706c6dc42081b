"""``harness.load_runs``, ``bench table`` and the table at the end of ``bench sweep``."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from harness import compare, load_runs, runner
from harness.cli import main
from harness.results import RunRecord
from harness.tables import METRIC_KEYS, render, summarize
from runs import fake_training, make_run


def bench(*args):
    return CliRunner().invoke(main, list(map(str, args)))


@pytest.fixture
def grid_runs(tmp_path):
    """Three seeds of a baseline, three of a method on its backbone, one run of another model."""
    root = tmp_path / "runs"
    base = [make_run(root, seed=s, n_test=120) for s in (0, 1, 2)]
    method = [make_run(root, seed=s, model="my-head", backbone="resnet101", score_seed=10 + s, n_test=120)
              for s in (0, 1, 2)]
    other = make_run(root, seed=0, model="other", score_seed=20, n_test=120)
    return root, base, method, other


def test_load_runs_reads_folders_globs_and_lists(grid_runs):
    root, base, method, other = grid_runs
    frame = load_runs(root)
    assert list(frame["path"]) == sorted(str(p) for p in [*base, *method, other])
    assert {"run_id", "dataset", "protocol", "model", "backbone", "aug", "size", "seed", "map", "of1_top3"} <= set(frame.columns)
    row = frame.set_index("path").loc[str(method[1])]
    record = RunRecord.read(method[1])
    assert (row["model"], row["backbone"], row["seed"]) == ("my-head", "resnet101", 1)
    assert row["map"] == record.metrics["map"] and row["cf1_top3"] == record.metrics["cf1_top3"]
    assert list(load_runs(str(root / "*my-head*"))["path"]) == [str(p) for p in method]
    assert len(load_runs([base[0], base[1] / "result.json"])) == 2


def test_load_runs_names_what_is_not_a_run(tmp_path):
    (tmp_path / "empty").mkdir()
    result = bench("table", tmp_path / "empty")
    assert result.exit_code == 1 and "not a run folder (no result.json)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = bench("table", str(tmp_path / "nothing*"))
    assert result.exit_code == 1 and "no file or folder matches" in result.stderr


def test_summary_rows_are_means_over_seeds_with_the_delta_of_compare(grid_runs):
    root, base, method, other = grid_runs
    table = summarize(load_runs(root), n_bootstrap=150, seed=3).set_index("model")
    assert list(table.index) == ["my-head", "other", "resnet101"]
    maps = [RunRecord.read(run).metrics["map"] for run in method]
    row = table.loc["my-head"]
    assert (row["n"], row["seeds"]) == (3, "0,1,2")
    assert row["map"] == pytest.approx(np.mean(maps), abs=1e-15)
    assert row["map_std"] == pytest.approx(np.std(maps, ddof=1), abs=1e-15)
    expected = compare(base, method, n_bootstrap=150, seed=3).columns["map"]
    assert row["baseline"] == "resnet101" and row["delta_map"] == expected["diff"]
    assert (row["delta_map_low"], row["delta_map_high"]) == expected["interval"]
    assert table.loc["other", "baseline"] == "" and math.isnan(table.loc["other", "delta_map"])
    assert math.isnan(table.loc["other", "map_std"]) and table.loc["resnet101", "baseline"] == ""


def test_every_format_shows_the_same_rows(grid_runs):
    root, *_ = grid_runs
    expected = summarize(load_runs(root), n_bootstrap=100)
    as_json = json.loads(bench("table", root, "--bootstrap", 100, "--format", "json").stdout)
    assert [r["model"] for r in as_json] == ["my-head", "other", "resnet101"]
    assert as_json[0]["map"] == expected.loc[0, "map"] and as_json[1]["delta_map"] is None
    rows = list(csv.DictReader(io.StringIO(bench("table", root, "--bootstrap", 100, "--format", "csv").stdout)))
    assert rows[0]["map"] == f"{100 * expected.loc[0, 'map']:.2f}" and rows[1]["map_std"] == ""
    assert rows[0]["delta_map_low"] == f"{100 * expected.loc[0, 'delta_map_low']:.2f}"
    markdown = bench("table", root, "--bootstrap", 100).stdout
    line = next(text for text in markdown.splitlines() if "my-head" in text)
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    assert cells[5:7] == ["3", "0,1,2"]
    assert cells[7] == f"{100 * expected.loc[0, 'map']:.2f} ± {100 * expected.loc[0, 'map_std']:.2f}"
    assert " vs resnet101 \\[" in cells[-1]
    assert "\\toprule" in bench("table", root, "--format", "tex", "--bootstrap", 0).stdout
    page = bench("table", root, "--format", "html", "--by", "backbone", "--bootstrap", 0).stdout
    assert "<td>resnet101</td><td>6</td>" in page


def test_cells_are_escaped_for_each_format(grid_runs):
    root, *_ = grid_runs
    table = summarize(load_runs(root), n_bootstrap=0)
    table.loc[1, "model"] = "<b>|x_1&"
    by = ("model", "aug", "size")
    assert "\\<b\\>\\|x_1&" in render(table, by, "md")
    assert "&lt;b&gt;|x_1&amp;" in render(table, by, "html")
    assert r"\textless{}b\textgreater{}\textbar{}x\_1\&" in render(table, by, "tex")
    table.loc[1, "model"] = "=HYPERLINK(1)"
    assert "'=HYPERLINK(1)" in render(table, by, "csv")


def test_unknown_by_columns_are_refused_in_one_line(grid_runs):
    root, *_ = grid_runs
    result = bench("table", root, "--by", "model,colour")
    assert result.exit_code == 1 and "--by 'model,colour': choose comma-separated columns among" in result.stderr


def test_a_sweep_ends_with_the_table_of_its_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "run", fake_training)
    grid = tmp_path / "grid.toml"
    grid.write_text('protocol = "wang2019"\ndatasets = ["toy"]\nmodels = ["resnet101"]\naugmentations = ["crop"]\n'
                    "sizes = [512]\nseeds = [0, 1]\n")
    result = CliRunner().invoke(main, ["sweep", str(grid), "--out", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    line = next(text for text in result.output.splitlines() if "| resnet101" in text)
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    assert cells[:7] == ["toy", "wang2019", "resnet101", "crop", "512", "2", "0,1"]
    assert f"Intervals of Δ map: bench table {tmp_path / 'runs'} --by model,aug,size" in result.output
    assert all(key in summarize(load_runs(tmp_path / "runs"), n_bootstrap=0).columns for key in METRIC_KEYS)
