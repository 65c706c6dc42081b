"""Scores that look like probabilities: ``evaluate``, ``bench metrics`` and ``bench leaderboard
submit`` warn in one line, and ``--scores probabilities`` converts them to logits."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.errors import BadInput
from harness.metrics import evaluate, from_probabilities
from harness.rundir import read_scores, write_scores
from runs import make_run


def data(seed=0, n=200, c=4):
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, c)) < 0.3).astype(np.int8)
    labels[0] = 1
    probabilities = np.clip(0.25 + 0.5 * labels + rng.normal(0, 0.25, labels.shape), 0, 1).astype(np.float32)
    return probabilities, labels


def threshold_precision(predicted, labels):
    """cp_thr by hand: per class TP / predicted, 0 for 0/0, averaged over classes."""
    hits = (predicted & (labels == 1)).sum(axis=0)
    count = predicted.sum(axis=0)
    return float(np.mean(np.where(count > 0, hits / np.maximum(count, 1), 0.0)))


def test_evaluate_warns_once_for_probabilities_and_never_for_logits():
    probabilities, labels = data()
    with pytest.warns(UserWarning, match=r"every score lies in \[0, 1\].*from_probabilities") as caught:
        evaluate(probabilities, labels)
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        evaluate(from_probabilities(probabilities), labels)


def test_converted_probabilities_keep_the_ranking_and_cut_at_the_probability():
    probabilities, labels = data(1)
    logits = from_probabilities(probabilities)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        as_given = evaluate(probabilities, labels)
    converted = evaluate(logits, labels, threshold=0.7)
    assert converted["map"] == as_given["map"] and converted["of1_top3"] == as_given["of1_top3"]
    assert converted["cp_thr0.7"] == pytest.approx(threshold_precision(probabilities >= 0.7, labels), abs=1e-12)
    # read as logits, every probability is ≥ logit(0.5) = 0: all predicted, which is the bug warned about
    assert as_given["cp_thr"] == pytest.approx(threshold_precision(probabilities >= 0, labels), abs=1e-12)
    assert np.isfinite(from_probabilities(np.array([[0.0, 1.0]]))).all()
    with pytest.raises(BadInput, match=r"scores: 1 value\(s\) outside \[0, 1\] \(or NaN\); first at row 0, column 1"):
        from_probabilities(np.array([[0.5, 1.5]]))


def test_bench_metrics_warns_in_one_line_and_converts_on_request(tmp_path):
    probabilities, labels = data(2)
    np.save(tmp_path / "p.npy", probabilities)
    np.save(tmp_path / "labels.npy", labels)
    runner = CliRunner()
    plain = runner.invoke(main, ["metrics", str(tmp_path / "p.npy"), str(tmp_path / "labels.npy"), "--json"])
    assert plain.exit_code == 0, plain.output
    assert plain.stderr.count("\n") == 1 and plain.stderr.startswith(f"Warning: {tmp_path / 'p.npy'}: every score")
    assert "--scores probabilities" in plain.stderr
    assert json.loads(plain.stdout)["cp_thr"] == pytest.approx(threshold_precision(probabilities >= 0, labels))
    converted = runner.invoke(main, ["metrics", str(tmp_path / "p.npy"), str(tmp_path / "labels.npy"), "--json",
                                     "--scores", "probabilities"])
    assert converted.exit_code == 0 and converted.stderr == ""
    result = json.loads(converted.stdout)
    assert result["cp_thr"] == pytest.approx(threshold_precision(probabilities >= 0.5, labels), abs=1e-12)
    np.save(tmp_path / "bad.npy", probabilities * 2)
    bad = runner.invoke(main, ["metrics", str(tmp_path / "bad.npy"), str(tmp_path / "labels.npy"), "--scores",
                               "probabilities"])
    assert bad.exit_code == 2 and "bad.npy (scores): " in bad.stderr and "outside [0, 1]" in bad.stderr


def test_submit_warns_about_stored_probabilities_before_its_checks(tmp_path):
    run = make_run(tmp_path / "runs", run_files=True)
    scores, labels, ids = read_scores(run)
    write_scores(run / "scores.npz", 1 / (1 + np.exp(-scores)), labels, ids)
    result = CliRunner().invoke(main, ["leaderboard", "submit", str(run), "--leaderboards", str(tmp_path / "board")])
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"Warning: {run / 'scores.npz'}: every score lies in [0, 1]") and "must store logits" in first
    assert "pass --scores probabilities to convert them" in first
    logits = CliRunner().invoke(main, ["leaderboard", "submit", str(make_run(tmp_path / "other")), "--leaderboards",
                                       str(tmp_path / "board")])
    assert "Warning" not in logits.stderr
