"""``bench metrics`` and ``bench compare`` through click's CliRunner."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.metrics import bootstrap, evaluate, paired_bootstrap
from harness.rundir import write_scores


def make_data(seed=0, n=120, c=6):
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, c)) < 0.25).astype(np.int8)
    scores = np.round(rng.normal(size=(n, c)) + labels, 1).astype(np.float32)
    labels[rng.random((n, c)) < 0.05] = -1
    return scores, labels, [f"{i:06d}" for i in range(n)]


@pytest.fixture
def files(tmp_path):
    scores, labels, ids = make_data()
    np.save(tmp_path / "scores.npy", scores)
    np.save(tmp_path / "labels.npy", labels)
    write_scores(tmp_path / "run" / "scores.npz", scores, labels, ids)
    return tmp_path, scores, labels, ids


def bench(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


def test_metrics_json_is_exactly_evaluate(files):
    folder, scores, labels, _ = files
    expected = evaluate(scores, labels)
    for args in ([folder / "scores.npy", folder / "labels.npy"], [folder / "run"], [folder / "run" / "scores.npz"]):
        result = bench("metrics", *args, "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == expected


def test_metrics_json_with_k_threshold_and_bootstrap(files):
    folder, scores, labels, _ = files
    result = bench("metrics", folder / "run", "--json", "--k", "2", "--threshold", "0.7", "--bootstrap", "30", "--seed", "4")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    intervals = record.pop("bootstrap")
    assert record == evaluate(scores, labels, k=2, threshold=0.7)
    assert intervals["n"] == 30 and intervals["seed"] == 4
    expected = bootstrap(scores, labels, 30, 4, ("map", "cf1_top2", "of1_top2"), k=2, threshold=0.7)
    assert intervals["intervals"] == {key: list(bounds) for key, bounds in expected.items()}


def test_metrics_table(files):
    folder, scores, labels, _ = files
    expected = evaluate(scores, labels)
    result = bench("metrics", folder / "scores.npy", folder / "labels.npy", "--bootstrap", "20")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "map (mAP)" in text and "of1_top3 (O-F1)" in text and "cf1_thr" in text and "per_class_ap (%)" in text
    assert f"{100 * expected['map']:.1f}" in text and f"{100 * expected['emap']:.1f}" in text
    assert "bootstrap: 20 resamples of the images, seed 0" in text
    assert bench("metrics", folder / "run", "--table").stdout == bench("metrics", folder / "run").stdout


def write_bad(folder, name, array):
    path = folder / name
    np.save(path, array)
    return path


@pytest.mark.parametrize(
    ("scores", "labels", "message"),
    [
        (np.array([[0.0, np.nan], [np.inf, 1.0]]), np.array([[1, 0], [0, 1]]), "2 non-finite value(s) (NaN or inf); first at row 0, column 1"),
        (np.zeros((2, 3)), np.zeros((2, 2)), "has shape (2, 3) but"),
        (np.zeros((2, 2)), np.array([[1, 0], [3, 1]]), "1 value(s) outside {1, 0, -1}; first at row 1, column 0"),
        (np.zeros((0, 2)), np.zeros((0, 2)), "empty array"),
        (np.zeros((2, 2)), np.zeros((2, 2)), "no positive label"),
    ],
)
def test_metrics_bad_arrays_exit_2_in_one_line(tmp_path, scores, labels, message):
    scores_path = write_bad(tmp_path, "s.npy", scores)
    labels_path = write_bad(tmp_path, "l.npy", labels)
    result = bench("metrics", scores_path, labels_path)
    assert result.exit_code == 2
    assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1
    assert message in result.stderr


def test_metrics_bad_files_exit_2_in_one_line(files):
    folder, scores, labels, ids = files
    (folder / "text.npy").write_text("not an array")
    np.savez(folder / "partial.npz", scores=scores)
    write_scores(folder / "nan" / "scores.npz", np.where(labels == 1, np.nan, scores), labels, ids)
    cases = [
        ([folder / "missing.npy", folder / "labels.npy"], "missing.npy: no such file"),
        ([folder / "missing"], "missing: no such file"),
        ([folder / "text.npy", folder / "labels.npy"], "text.npy: not a readable .npy file"),
        ([folder / "scores.npy"], "scores.npy: not a .npz archive"),
        ([folder / "run" / "scores.npz", folder / "labels.npy"], "an .npz archive"),
        ([folder / "partial.npz"], "missing array(s) labels"),
        ([folder / "nan"], "nan (scores): "),
        ([folder / "scores.npy", folder / "labels.npy", folder / "labels.npy"], "got 3 paths"),
    ]
    for args, message in cases:
        result = bench("metrics", *args)
        assert result.exit_code == 2, (args, result.output)
        assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr, (args, result.stderr)


def test_compare_aligns_ids_and_reports_the_paired_difference(files):
    folder, scores, labels, ids = files
    better = (scores + 1.5 * (labels == 1)).astype(np.float32)
    order = np.random.default_rng(1).permutation(len(ids))
    write_scores(folder / "b" / "scores.npz", better[order], labels[order], [ids[i] for i in order])
    result = bench("compare", folder / "run", folder / "b", "--bootstrap", "200", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    expected = paired_bootstrap(scores, better, labels, 200, 0)
    assert record["map_a"] == evaluate(scores, labels)["map"] and record["map_b"] == expected["map_b"]
    assert record["map_diff_interval"] == list(expected["map_diff_interval"])
    assert record["excludes_zero"] is True
    diffs = [abs(x["diff"]) for x in record["largest_changes"]]
    assert len(diffs) == 5 and diffs == sorted(diffs, reverse=True)
    text = bench("compare", folder / "run", folder / "b", "--bootstrap", "200").stdout
    assert "Not significant: with 1 run(s) of A, 1 of B the variance across seeds is unknown" in text
    assert record["excludes_zero"] is True and record["significant"] is False
    assert "largest per-class AP changes (B − A)" in text


def test_compare_same_run_includes_zero(files):
    folder = files[0]
    result = bench("compare", folder / "run", folder / "run", "--bootstrap", "20")
    assert result.exit_code == 0, result.output
    map_row = next(line for line in result.stdout.splitlines() if line.startswith("map "))
    assert map_row.split()[-3:] == ["+0.00", "[+0.00,", "+0.00]"]
    assert "Not significant" in result.stdout and "P(B > A) = 0.50 over 1 run pair(s)" in result.stdout


def test_compare_refuses_mismatched_runs(files):
    folder, scores, labels, ids = files
    other_ids = list(ids)
    other_ids[7] = "999999"
    write_scores(folder / "ids" / "scores.npz", scores, labels, other_ids)
    flipped = labels.copy()
    flipped[3, 2] = 1 - abs(flipped[3, 2])
    write_scores(folder / "labels" / "scores.npz", scores, flipped, ids)
    write_scores(folder / "dup" / "scores.npz", scores, labels, ids[:-1] + ids[:1])
    write_scores(folder / "classes" / "scores.npz", scores[:, :4], labels[:, :4], ids)
    cases = [
        ("ids", "1 only in", "(first '000007')", "different test sets"),
        ("labels", "labels differ for image '000003', class 2", "different test sets"),
        ("dup", "image id '000000' appears more than once", "unique"),
        ("classes", "has 6 classes but", "4"),
        ("missing", "no such file", "run folder"),
    ]
    for name, *messages in cases:
        result = bench("compare", folder / "run", folder / name)
        assert result.exit_code == 2, (name, result.output)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert all(m in result.stderr for m in messages), result.stderr


def test_compare_and_metrics_name_classes_from_the_run_folder(tmp_path):
    from runs import make_run

    run_a = make_run(tmp_path / "a", score_seed=1)
    run_b = make_run(tmp_path / "b", score_seed=2)
    compared = CliRunner().invoke(main, ["compare", str(run_a), str(run_b), "--bootstrap", "50", "--json"])
    assert compared.exit_code == 0, compared.output
    largest = json.loads(compared.output)["largest_changes"]
    shown = CliRunner().invoke(main, ["metrics", str(run_a)])
    assert shown.exit_code == 0
    assert all(f"class{c}" in shown.output for c in range(5))
    table = CliRunner().invoke(main, ["compare", str(run_a), str(run_b), "--bootstrap", "50"])
    assert "class" in table.output and any(f"class{c} " in table.output for c in range(5))
    assert largest and all(item["name"] == f"class{item['class']}" for item in largest)
