"""The bootstrap's bucketed counting gives exactly the integers of a cumulative sum over every
image, narrow (uint8) or not, one thread or two; ``benchmarks/bootstrap_speed.py`` runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import harness.metrics as metrics


def cumulative_at(weights: np.ndarray, order: np.ndarray, positions: np.ndarray) -> np.ndarray:
    sums = np.vstack([np.zeros((1, weights.shape[1]), dtype=np.int64), np.cumsum(weights[order], axis=0)])
    return sums[positions]


@pytest.mark.parametrize("largest", [3, 255, 256, 70_000])
def test_bucket_sums_equal_a_cumulative_sum_over_every_image(largest):
    rng = np.random.default_rng(largest)
    weights = rng.integers(0, 4, (500, 7)).astype(np.int32)
    weights[17, 3] = largest
    order = rng.permutation(500)[:450]
    below = np.sort(rng.integers(0, 450, 60))
    buckets = metrics._buckets(below, 450, 450)
    narrow = metrics._narrow(weights)
    assert narrow.dtype == (np.uint8 if largest <= 255 else np.int32)
    sums = metrics._bucket_sums(narrow, order, buckets.starts)
    assert sums.dtype == np.int32
    np.testing.assert_array_equal(sums[buckets.below], cumulative_at(weights, order, below))
    np.testing.assert_array_equal(sums[buckets.below_cut], cumulative_at(weights, order, np.array([450]))[0])


def test_a_class_with_every_label_ignored_counts_nothing():
    buckets = metrics._buckets(np.zeros(0, dtype=np.intp), 0, 0)
    sums = metrics._bucket_sums(np.ones((4, 3), dtype=np.uint8), np.zeros(0, dtype=np.intp), buckets.starts)
    np.testing.assert_array_equal(sums, np.zeros((1, 3)))
    assert buckets.below_cut == 0


def test_intervals_do_not_depend_on_threads_or_narrowing(monkeypatch):
    rng = np.random.default_rng(3)
    labels = rng.choice([1, 0, 0, -1], size=(300, 6)).astype(np.int8)
    scores = np.round(rng.normal(size=labels.shape), 1)
    keys = ("map", "cf1_top3", "of1_top3", "cp_thr", "op_thr")
    monkeypatch.setattr(metrics, "_THREADS", 2)
    reference = metrics.bootstrap(scores, labels, 60, 4, keys)
    monkeypatch.setattr(metrics, "_THREADS", 1)
    monkeypatch.setattr(metrics, "_narrow", lambda weights: weights)
    assert metrics.bootstrap(scores, labels, 60, 4, keys) == reference


def test_the_bootstrap_speed_benchmark_runs_and_checks_its_results():
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bootstrap_speed.py"
    result = subprocess.run([sys.executable, str(script), "--replicates", "2"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert "intervals bit-identical" in result.stdout and "cumulative (replaced)" in result.stdout
