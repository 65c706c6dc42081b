"""The metrics engine at COCO test size against scikit-learn (``pytest --benchmark-enable``).

The workload is the one of ``benchmarks/metrics_speed.py``; with benchmarks disabled (the
project's default) the test is skipped, since a single run proves nothing about speed. It
asserts only a loose regression floor (2x; measured 4.2-5.0x on the shared 2-core CI machine)
and prints the measured ratio, since a busy machine moves the ratio more than a change would.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from harness.metrics import evaluate


def load_speed_script():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "metrics_speed.py"
    spec = importlib.util.spec_from_file_location("metrics_speed", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_evaluate_at_coco_size_stays_well_ahead_of_sklearn_ap_alone(benchmark):
    if benchmark.disabled:
        pytest.skip("a speed benchmark: run pytest with --benchmark-enable")
    speed = load_speed_script()
    scores, labels = speed.synthetic_scores(*speed.COCO_TEST)
    result = benchmark.pedantic(evaluate, (scores, labels), rounds=5, iterations=1, warmup_rounds=1)
    sklearn_aps = speed.sklearn_average_precisions(scores, labels)
    assert abs(result["map"] - np.mean(sklearn_aps)) < 1e-9
    sklearn_seconds = speed.best_time(lambda: speed.sklearn_average_precisions(scores, labels), 3)
    ratio = sklearn_seconds / benchmark.stats.stats.min
    benchmark.extra_info.update({"sklearn_ap_seconds": sklearn_seconds, "ratio": ratio})
    print(f"\nevaluate at COCO size: {ratio:.1f}x scikit-learn's per-class AP alone")
    assert ratio >= 2, f"evaluate is only {ratio:.1f}x faster than sklearn's per-class AP"
