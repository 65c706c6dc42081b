"""The difference of each method row to its same-backbone baseline, with a seed-and-image interval.

A *method row* is a reproduced row whose method is not ``baseline`` (a plugin method or a
fusion). Its baseline is the reproduced baseline row of the same section, backbone, loss,
data and dataset fingerprint whose augmentation and input size are the row's; a fusion
over several augmentations or sizes is compared with the best (highest mAP) baseline row
among those it fuses, as the paper's "Single Best". ``Δ = mean mAP(method) − mean mAP(baseline)``
over each row's seeds.

The interval (95%, percentile) is ``harness.metrics.two_level_bootstrap``'s, the one
``bench compare`` gives: each replicate resamples the test images once (the same draw for
both rows, so the comparison is paired on images) and, independently on each side, the
row's seeds with replacement. It is given only when both rows have at least two seeds: with one seed a side's
seed variance is unknown, and an interval over test images alone would call seed noise a
difference.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from harness.metrics import two_level_bootstrap

from harness.leaderboard.rows import BASELINE, BASELINE_DELTA, Row

N_REPLICATES = 1000
MIN_SEEDS = 2


def same_backbone_baseline(row: Row, rows: list[Row]) -> Row | None:
    """The baseline row ``row`` is compared with (module docstring); None when there is none."""
    text = row.text
    augs, sizes = set(text["aug"].split("+")), set(text["size"].split("+"))
    candidates = [
        other for other in rows
        if other.kind == "reproduced" and other.text["method"] == BASELINE and other.section == row.section
        and all(other.text[k] == text[k] for k in ("backbone", "loss", "data", "fingerprint", "deviations"))
        and other.text["aug"] in augs and other.text["size"] in sizes
    ]
    return max(candidates, key=lambda other: other.means["map"], default=None)


def add_baseline_deltas(rows: list[Row], scores_of: Callable[[str], tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
    """Set ``text[BASELINE_DELTA]`` (and ``baseline_delta``) on every method row of ``rows`` (one section):
    ``+1.2 [−0.3, +2.5] vs M1 448`` (the interval only with ≥ 2 seeds each side), or ``-`` with
    no baseline; ``scores_of`` gives a stored bundle's ``(scores, labels, ids)``."""
    for row in rows:
        if row.kind != "reproduced" or row.text["method"] == BASELINE:
            continue
        baseline = same_backbone_baseline(row, rows)
        if baseline is None:
            row.text[BASELINE_DELTA] = "-"
            continue
        delta = row.means["map"] - baseline.means["map"]
        against = " ".join(baseline.text[k] for k in ("aug", "size"))
        if len(row.bundles) < MIN_SEEDS or len(baseline.bundles) < MIN_SEEDS:
            row.text[BASELINE_DELTA] = f"{delta:+.1f} vs {against}"
            row.baseline_delta = (delta, None, None, against)
            continue
        labels, runs_a, runs_b = None, [], []
        for bundles, runs in ((baseline.bundles, runs_a), (row.bundles, runs_b)):
            for bundle in bundles:
                scores, bundle_labels, ids = scores_of(bundle)
                order = np.argsort(ids, kind="stable")
                runs.append(np.asarray(scores, dtype=np.float64)[order])
                labels = np.asarray(bundle_labels)[order] if labels is None else labels
        interval = two_level_bootstrap(runs_a, runs_b, labels, N_REPLICATES, keys=["map"])["columns"]["map"]["interval"]
        if interval[0] is None:  # no replicate defined an mAP on both sides
            row.text[BASELINE_DELTA] = f"{delta:+.1f} vs {against}"
            row.baseline_delta = (delta, None, None, against)
            continue
        low, high = (100 * bound for bound in interval)
        row.text[BASELINE_DELTA] = f"{delta:+.1f} [{low:+.1f}, {high:+.1f}] vs {against}"
        row.baseline_delta = (delta, low, high, against)
