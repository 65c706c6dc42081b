"""How much faster is the bootstrap than the implementation it replaced? ``bootstrap`` (mAP, CF1
and OF1 at top 3) at COCO test size, three ways in one process, each checked to give the same
intervals bit for bit:

- ``cumulative``: the replaced counting, a cumulative sum of the resample weights over every
  image of a class in score order, read at each positive (one thread);
- ``buckets``: the weights (as uint8 where they fit) summed per bucket between consecutive
  positives, then across the buckets (one thread);
- ``buckets, threads``: the same with the classes of each chunk shared among
  ``harness.metrics._THREADS`` threads (2 where the machine has 2 cores or more).

    python benchmarks/bootstrap_speed.py [--replicates 104] [--repeat 1]

Each time is the best of ``--repeat`` calls of the whole ``bootstrap`` (its one-off sorting
included); ratios are against ``cumulative``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from tabulate import tabulate

import harness.metrics as metrics

sys.path.insert(0, str(Path(__file__).parent))
from metrics_speed import COCO_TEST, synthetic_scores  # noqa: E402


def cumulative_sums(weights: np.ndarray, order: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The replaced counting: a cumulative sum over every image in score order (with a leading
    0 row), read at ``starts`` and at the end, as ``_bucket_sums`` returns it."""
    sums = np.zeros((len(order) + 1, weights.shape[1]), dtype=weights.dtype)
    np.cumsum(weights[order], axis=0, out=sums[1:])
    return sums[np.append(starts, len(order))]


def timed(scores, labels, replicates: int, repeat: int, *, counting, threads: int):
    """Best time of ``repeat`` bootstrap calls with the given counting and threads, and the result."""
    saved = metrics._bucket_sums, metrics._narrow, metrics._THREADS
    metrics._bucket_sums, metrics._THREADS = counting, threads
    if counting is cumulative_sums:
        metrics._narrow = lambda weights: weights
    try:
        times, result = [], None
        for _ in range(repeat):
            start = time.perf_counter()
            result = metrics.bootstrap(scores, labels, replicates)
            times.append(time.perf_counter() - start)
        return min(times), result
    finally:
        metrics._bucket_sums, metrics._narrow, metrics._THREADS = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=104, help="bootstrap resamples per call")
    parser.add_argument("--repeat", type=int, default=1, help="calls per way (the best is kept)")
    args = parser.parse_args()
    scores, labels = synthetic_scores(*COCO_TEST)
    ways = [
        ("cumulative (replaced)", cumulative_sums, 1),
        ("buckets, 1 thread", metrics._bucket_sums, 1),
        (f"buckets, {metrics._THREADS} threads", metrics._bucket_sums, metrics._THREADS),
    ]
    results = [(name, *timed(scores, labels, args.replicates, args.repeat, counting=counting, threads=threads))
               for name, counting, threads in ways]
    reference_time, reference = results[0][1], results[0][2]
    assert all(result == reference for _, _, result in results), "intervals differ"
    rows = [(name, f"{seconds:.2f}", f"{reference_time / seconds:.2f}x") for name, seconds, _ in results]
    n, c, _ = COCO_TEST
    print(f"bootstrap of map, cf1_top3, of1_top3 at {n}×{c}, n={args.replicates}, {os.cpu_count()} CPU(s); "
          "intervals bit-identical")
    print(tabulate(rows, headers=["counting", "s", "speed-up"], colalign=("left", "right", "right"),
                   disable_numparse=True))


if __name__ == "__main__":
    main()
