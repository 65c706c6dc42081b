"""The difference of each method row to its same-backbone baseline, with a seed-and-image interval.

A *method row* is a reproduced row whose method is not ``baseline`` (a plugin method or a
fusion). Its baseline is the reproduced baseline row of the same section, backbone, loss,
data and dataset fingerprint whose augmentation and input size are the row's; a fusion
over several augmentations or sizes is compared with the best (highest mAP) baseline row
among those it fuses, as the paper's "Single Best". ``Δ = mean mAP(method) − mean mAP(baseline)``
over each row's seeds.

The interval (95%, percentile) comes from ``seed_and_image_bootstrap``: each replicate
resamples the test images once (the same draw for both rows, so the comparison is paired
on images) and, independently on each side, the row's seeds with replacement; the
replicate's difference is the mean over the drawn seeds of each run's mAP on the drawn
images. It is given only when both rows have at least two seeds: with one seed a side's
seed variance is unknown, and an interval over test images alone would call seed noise a
difference.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from harness.leaderboard.rows import BASELINE, BASELINE_DELTA, Row

N_REPLICATES = 1000
MIN_SEEDS = 2
_CHUNK = 50


def weighted_map(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """mAP (fraction) under image weights ``weights`` (images × replicates): for each class
    with positives, ``AP = Σ_j w_j TP_w(≥ s_j) / V_w(≥ s_j) / Σ_j w_j`` over its positives j,
    where ``TP_w`` and ``V_w`` are the weights of positives and of non-ignored labels (label
    -1 is ignored) scored at or above ``s_j`` (tied scores count as at or above each other);
    the mean over classes whose drawn positives weigh more than zero. With all weights 1 this
    is ``harness.metrics.evaluate``'s ``map``."""
    n_replicates = weights.shape[1]
    total = np.zeros(n_replicates)
    defined = np.zeros(n_replicates)
    for c in range(labels.shape[1]):
        valid = np.flatnonzero(labels[:, c] != -1)
        order = valid[np.argsort(-scores[valid, c], kind="stable")]
        ranked = -scores[order, c]
        positive = labels[order, c] == 1
        if not positive.any():
            continue
        w = weights[order]
        valid_sums = np.cumsum(w, axis=0)
        positive_sums = np.cumsum(w * positive[:, None], axis=0)
        last_tied = np.searchsorted(ranked, ranked[positive], side="right") - 1
        own = w[positive]
        n_positive = own.sum(axis=0)
        precision = np.divide(positive_sums[last_tied], valid_sums[last_tied], out=np.zeros(own.shape), where=own > 0)
        ap = np.divide((precision * own).sum(axis=0), n_positive, out=np.zeros(n_replicates), where=n_positive > 0)
        total += ap
        defined += n_positive > 0
    return np.divide(total, defined, out=np.full(n_replicates, np.nan), where=defined > 0)


def seed_and_image_bootstrap(runs_a: list[np.ndarray], runs_b: list[np.ndarray], labels: np.ndarray,
                             n: int = N_REPLICATES, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of ``mean mAP(B) − mean mAP(A)`` in percent (module docstring):
    ``runs_a``/``runs_b`` are the score arrays of each side's seeds, all on the images of ``labels``."""
    rng = np.random.default_rng(seed)
    n_images = labels.shape[0]
    runs = [*runs_a, *runs_b]
    maps = np.empty((len(runs), n))
    for start in range(0, n, _CHUNK):
        size = min(_CHUNK, n - start)
        draws = rng.integers(0, n_images, (size, n_images))
        weights = np.stack([np.bincount(d, minlength=n_images) for d in draws], axis=1).astype(float)
        for i, scores in enumerate(runs):
            maps[i, start:start + size] = weighted_map(scores, labels, weights)
    columns = np.arange(n)[:, None]
    side_a = maps[: len(runs_a)][rng.integers(0, len(runs_a), (n, len(runs_a))), columns].mean(axis=1)
    side_b = maps[len(runs_a):][rng.integers(0, len(runs_b), (n, len(runs_b))), columns].mean(axis=1)
    differences = 100 * (side_b - side_a)
    low, high = np.nanpercentile(differences, [2.5, 97.5])
    return float(low), float(high)


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
        low, high = seed_and_image_bootstrap(runs_a, runs_b, labels)
        row.text[BASELINE_DELTA] = f"{delta:+.1f} [{low:+.1f}, {high:+.1f}] vs {against}"
        row.baseline_delta = (delta, low, high, against)
