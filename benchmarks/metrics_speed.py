"""How fast is the metrics engine? The whole ``evaluate`` suite against scikit-learn's
``average_precision_score`` per class alone, in one process, at COCO test size; and the bootstrap
at VOC2007 test size.

    python benchmarks/metrics_speed.py [--repeat 5] [--bootstrap 1000] [--coco-bootstrap 100]

Every time is the best of ``--repeat`` rounds (the least disturbed by other processes), each
round timing scikit-learn and ``evaluate`` with one and with two threads (``harness.metrics._THREADS``)
one after the other, so that a busy spell slows all three alike; the ratios are scikit-learn's
time over ``evaluate``'s. The data are synthetic but shaped like the
real test sets: float32 logits, per-class positive rates spread around the dataset's mean.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.metrics import average_precision_score
from tabulate import tabulate

from harness import metrics
from harness.metrics import bootstrap, evaluate, paired_bootstrap

COCO_TEST = (40_137, 80, 0.036)
VOC07_TEST = (4_952, 20, 0.071)


def synthetic_scores(n_images: int, n_classes: int, positive_rate: float, seed: int = 0):
    """``(scores, labels)``: per-class positive rates log-normally spread around
    ``positive_rate``; float32 logits, lower and narrower for negatives than for positives."""
    rng = np.random.default_rng(seed)
    rates = rng.lognormal(0.0, 0.8, n_classes)
    rates = np.clip(rates * positive_rate / rates.mean(), 0.002, 0.5)
    labels = (rng.random((n_images, n_classes)) < rates).astype(np.int8)
    logits = np.where(labels == 1, rng.normal(0.5, 2.0, labels.shape), rng.normal(-3.0, 1.5, labels.shape))
    return logits.astype(np.float32), labels


def sklearn_average_precisions(scores: np.ndarray, labels: np.ndarray) -> list[float]:
    """scikit-learn's AP for every class (these data have no ignored labels)."""
    return [average_precision_score(labels[:, c], scores[:, c]) for c in range(scores.shape[1])]


def best_time(function, repeat: int) -> float:
    """The fastest of ``repeat`` timed calls, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def interleaved_best_times(scores: np.ndarray, labels: np.ndarray, repeat: int) -> tuple[float, float, float]:
    """Best seconds of scikit-learn's per-class AP and of ``evaluate`` with 1 and 2 threads, the
    three timed in turn in each of ``repeat`` rounds."""
    saved = metrics._THREADS
    best = [float("inf")] * 3
    try:
        for _ in range(repeat):
            for slot, threads in ((0, None), (1, 1), (2, 2)):
                if threads is None:
                    best[0] = min(best[0], best_time(lambda: sklearn_average_precisions(scores, labels), 1))
                    continue
                metrics._THREADS = threads
                best[slot] = min(best[slot], best_time(lambda: evaluate(scores, labels), 1))
    finally:
        metrics._THREADS = saved
    return best[0], best[1], best[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per measurement (best is kept)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamples for the VOC-size bootstrap timings")
    parser.add_argument("--coco-bootstrap", type=int, default=100, help="resamples for the COCO-size bootstrap timing")
    args = parser.parse_args()

    scores, labels = synthetic_scores(*COCO_TEST)
    result = evaluate(scores, labels)
    assert abs(result["map"] - np.mean(sklearn_average_precisions(scores, labels))) < 1e-9
    theirs, ours_1, ours_2 = interleaved_best_times(scores, labels, args.repeat)
    coco_boot = best_time(lambda: bootstrap(scores, labels, args.coco_bootstrap), 1)

    voc_scores, voc_labels = synthetic_scores(*VOC07_TEST, seed=1)
    other = voc_scores + np.random.default_rng(2).normal(0, 0.5, voc_scores.shape).astype(np.float32)
    boot = best_time(lambda: bootstrap(voc_scores, voc_labels, args.bootstrap), 1)
    paired = best_time(lambda: paired_bootstrap(voc_scores, other, voc_labels, args.bootstrap), 1)

    n, c, _ = COCO_TEST
    rows = [
        (f"evaluate, every metric, 1 thread ({n}×{c})", f"{1000 * ours_1:.1f}"),
        (f"evaluate, every metric, 2 threads ({n}×{c})", f"{1000 * ours_2:.1f}"),
        (f"sklearn average_precision_score per class ({n}×{c})", f"{1000 * theirs:.1f}"),
        (f"bootstrap map, cf1_top3, of1_top3, n={args.bootstrap} ({VOC07_TEST[0]}×{VOC07_TEST[1]})", f"{1000 * boot:.1f}"),
        (f"paired_bootstrap, n={args.bootstrap} ({VOC07_TEST[0]}×{VOC07_TEST[1]})", f"{1000 * paired:.1f}"),
        (f"bootstrap map, cf1_top3, of1_top3, n={args.coco_bootstrap} ({n}×{c})", f"{1000 * coco_boot:.1f}"),
    ]
    print(tabulate(rows, headers=["measurement", "ms"], colalign=("left", "right"), disable_numparse=True))
    print(f"\nratio sklearn AP alone / evaluate suite: {theirs / ours_1:.1f}x with 1 thread, "
          f"{theirs / ours_2:.1f}x with 2 (target >= 5x)")


if __name__ == "__main__":
    main()
