"""The metrics engine: every metric of ``docs/METRICS.md``, vectorised and versioned.

Inputs are ``scores`` (N×C logits) and ``labels`` (N×C: ``1`` positive, ``0`` negative, ``-1``
ignored); every result is a fraction in [0, 1]. ``METRICS_VERSION`` changes whenever any value
could change for the same inputs. The formulas, tie rules, key names, the decisions where the
literature is silent and the bootstrap are specified in docs/METRICS.md, which this module follows.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np
from tabulate import tabulate

from harness.errors import BadInput
from harness.machine import usable_cores

METRICS_VERSION = 1

PAPER_COLUMNS = (
    ("map", "mAP"),
    ("cp_top{k}", "L-P"),
    ("cr_top{k}", "L-R"),
    ("cf1_top{k}", "L-F1"),
    ("op_top{k}", "O-P"),
    ("or_top{k}", "O-R"),
    ("of1_top{k}", "O-F1"),
)

_TOP_METRICS = ("cp", "cr", "cf1", "cf1_harmonic", "op", "or", "of1")
_THRESHOLD_METRICS = ("cp", "cr", "cf1", "op", "or", "of1")
_CHUNK_ELEMENTS = 1 << 20


def validate(scores, labels, *, names: tuple[str, str] = ("scores", "labels")):
    """Check ``scores`` and ``labels`` and return them as float arrays (float32 stays float32,
    which sorts faster and has the same ties; anything else becomes float64) and int8.

    Raises ``BadInput`` (one line, naming the array through ``names``) for non-numeric data,
    arrays that are not 2-D, a shape mismatch, an empty array, NaN or infinite scores (how
    many, and the first one's row and column, 0-based) and labels outside {1, 0, -1}.
    """
    score_name, label_name = names
    scores = _numeric_array(scores, score_name)
    labels = _numeric_array(labels, label_name)
    for array, name in ((scores, score_name), (labels, label_name)):
        if array.ndim != 2:
            raise BadInput(f"{name}: expected a 2-D array (images × classes), got shape {array.shape}")
    if scores.shape != labels.shape:
        raise BadInput(
            f"{score_name} has shape {scores.shape} but {label_name} has shape {labels.shape}; "
            "both must be images × classes"
        )
    if scores.size == 0:
        raise BadInput(f"{score_name}: empty array of shape {scores.shape}; need at least one image and one class")
    if scores.dtype.kind == "f":
        _refuse(~np.isfinite(scores), scores, score_name, "non-finite value(s) (NaN or inf)", "fix the model output")
    _refuse(
        ~((labels == 1) | (labels == 0) | (labels == -1)),
        labels,
        label_name,
        "value(s) outside {1, 0, -1}",
        "encode present as 1, absent as 0, ignored as -1",
    )
    dtype = np.float32 if scores.dtype == np.float32 else np.float64
    return scores.astype(dtype, copy=False), labels.astype(np.int8, copy=False)


def _numeric_array(value, name: str) -> np.ndarray:
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:
        raise BadInput(f"{name}: not an array ({error})") from None
    if array.dtype.kind not in "biuf":
        raise BadInput(f"{name}: expected numbers, got dtype {array.dtype}")
    return array


def _refuse(bad: np.ndarray, array: np.ndarray, name: str, what: str, advice: str) -> None:
    if not bad.any():
        return
    row, column = divmod(int(np.argmax(bad)), array.shape[1])
    raise BadInput(
        f"{name}: {int(bad.sum())} {what}; first at row {row}, column {column} "
        f"({array[row, column].item()!r}); {advice}"
    )


def evaluate(scores, labels, *, k: int = 3, threshold: float = 0.5) -> dict[str, Any]:
    """Every metric of the module docstring, as a dict of fractions (and two counts).

    Keys, in order: ``map``, ``map_zero_nopos``, ``map_voc07_11pt``, ``map_voc_allpoint``,
    ``emap``, the seven ``*_top{k}`` keys, the six ``*_thr`` keys, ``n_classes_no_pos``,
    ``n_classes_never_predicted`` and ``per_class_ap`` (a list, ``None`` for classes without
    positives, so the dict is valid JSON as it is).

    >>> scores = np.array([[2.0, 0.5, -1.0], [0.1, 1.5, -0.5]])
    >>> labels = np.array([[1, 0, 0], [1, 1, -1]])
    >>> result = evaluate(scores, labels, k=1)
    >>> result["map"], result["n_classes_no_pos"], result["per_class_ap"]
    (1.0, 1, [1.0, 1.0, None])
    >>> result["op_top1"], round(result["or_top1"], 4), result["cp_thr"]
    (1.0, 0.6667, 0.5)
    """
    scores, labels = validate(scores, labels)
    _require_positive(labels)
    keys = _keys(k, threshold, labels.shape[1])
    if looks_like_probabilities(scores):
        warnings.warn(f"{PROBABILITY_WARNING}; convert them with harness.metrics.from_probabilities", UserWarning,
                      stacklevel=2)
    sorted_rows = np.sort(scores, axis=1)
    predicted_top = _top_k(scores, sorted_rows, k)
    all_ranks = _class_ranks(scores, labels, _logit_cut(threshold, scores.dtype), keep_order=False)
    class_ap, hit_thr, predicted_thr, n_positive = _class_counts(all_ranks, None)
    counts = _Counts(
        np.count_nonzero(predicted_top & (labels == 1), axis=0),
        np.count_nonzero(predicted_top, axis=0),
        hit_thr,
        predicted_thr,
        n_positive,
    )
    counted = _count_metrics(counts, k, labels.shape[0])
    has_positives = n_positive > 0
    ap_11pt, ap_allpoint = np.array(
        [_voc_average_precision(*_at_or_above(ranks)) for ranks in all_ranks if ranks.positive_images.size]
    ).T

    result: dict[str, Any] = {
        "map": float(class_ap[has_positives].mean()),
        "map_zero_nopos": float(np.where(has_positives, class_ap, 0.0).mean()),
        "map_voc07_11pt": float(ap_11pt.mean()),
        "map_voc_allpoint": float(ap_allpoint.mean()),
        "emap": _image_map(scores, labels, sorted_rows),
    }
    result.update({key: float(counted[name]) for key, name in keys.items() if key != "map"})
    result["n_classes_no_pos"] = int((~has_positives).sum())
    result["n_classes_never_predicted"] = int((counts.predicted_top == 0).sum())
    result["per_class_ap"] = [float(ap) if ok else None for ap, ok in zip(class_ap, has_positives)]
    return result


PROBABILITY_WARNING = (
    "every score lies in [0, 1]: these look like probabilities, but scores are logits and the threshold "
    "metrics (*_thr) cut at logit(threshold), 0 for 0.5"
)
"""The start of the one-line warning; each caller adds how to convert the scores."""
PROBABILITY_CLIP = 1e-12


def looks_like_probabilities(scores: np.ndarray) -> bool:
    """Whether every score lies in [0, 1]: logits of a trained model practically never do."""
    return bool(scores.min() >= 0 and scores.max() <= 1)


def from_probabilities(probabilities, *, name: str = "scores") -> np.ndarray:
    """Logits ``log(p) − log(1 − p)`` (float64) of probabilities clipped to [1e-12, 1 − 1e-12]:
    the order of the scores is kept (only values within 1e-12 of 0 or 1 come to tie), so the
    ranking metrics are unchanged and the threshold metrics cut where ``p ≥ threshold``.
    Raises ``BadInput`` for values outside [0, 1]."""
    values = _numeric_array(probabilities, name).astype(np.float64)
    if values.ndim == 2 and values.size:
        _refuse(~((values >= 0) & (values <= 1)), values, name, "value(s) outside [0, 1] (or NaN)",
                "give probabilities, or drop --scores probabilities for logits")
    clipped = np.clip(values, PROBABILITY_CLIP, 1 - PROBABILITY_CLIP)
    return np.log(clipped) - np.log1p(-clipped)


def _require_positive(labels: np.ndarray) -> None:
    if not (labels == 1).any():
        raise BadInput("labels: no positive label (1) anywhere; mAP and recall are undefined without positives")


def _keys(k: int, threshold: float, n_classes: int) -> dict[str, str]:
    """The public names (``cp_top3``, ``cp_thr0.7``, ...) of ``map`` and the count-based metrics,
    mapped to their internal names; raises ``BadInput`` for a k or threshold out of range."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n_classes:
        raise BadInput(f"k={k!r}: must be an integer from 1 to the number of classes ({n_classes})")
    threshold = float(threshold)
    if not 0.0 < threshold < 1.0:
        raise BadInput(f"threshold={threshold!r}: must be a probability strictly between 0 and 1")
    thr = "" if threshold == 0.5 else repr(threshold)
    keys = {"map": "map"}
    for name in _TOP_METRICS:
        public = f"cf1_top{k}_harmonic" if name == "cf1_harmonic" else f"{name}_top{k}"
        keys[public] = f"{name}_top"
    keys.update({f"{name}_thr{thr}": f"{name}_thr" for name in _THRESHOLD_METRICS})
    return keys


def _logit_cut(threshold: float, dtype: np.dtype) -> np.ndarray:
    """``logit(threshold)`` as the smallest value of ``dtype`` at or above it, so that
    ``score ≥ cut`` in ``dtype`` is exactly ``score ≥ logit(threshold)`` (0 for 0.5)."""
    exact = np.log(float(threshold)) - np.log1p(-float(threshold))
    cut = np.asarray(exact, dtype=dtype)
    return cut if cut >= exact else np.nextafter(cut, np.asarray(np.inf, dtype=dtype))


class _ClassRanks(NamedTuple):
    """One class's ranking: its positives' image indices in ascending score; how many positives
    and how many non-ignored labels score strictly below each positive, and below the threshold
    cut; the number of non-ignored labels; and, for the bootstrap, the non-ignored images in
    ascending score. Counts "at or above" a score are the total minus these."""

    positive_images: np.ndarray
    positives_below: np.ndarray
    valid_below: np.ndarray
    positives_below_cut: int
    valid_below_cut: int
    n_valid: int
    valid_order: np.ndarray | None
    buckets: _Buckets | None = None


class _Buckets(NamedTuple):
    """Where one class's weighted counts of non-ignored labels are needed: ``starts`` (0 and
    every distinct ``valid_below`` and cut position below ``n_valid``, ascending) split the
    ascending order into buckets, so summing the weights per bucket and then across buckets
    gives every count "below" a positive; ``below`` and ``below_cut`` index those sums."""

    starts: np.ndarray
    below: np.ndarray
    below_cut: int


def _buckets(valid_below: np.ndarray, valid_below_cut: int, n_valid: int) -> _Buckets:
    needed = np.concatenate(([0], valid_below, [valid_below_cut]))
    starts = np.unique(needed[needed < n_valid]) if n_valid else np.zeros(0, dtype=np.intp)
    return _Buckets(starts, np.searchsorted(starts, valid_below), int(np.searchsorted(starts, valid_below_cut)))


def _class_ranks(scores: np.ndarray, labels: np.ndarray, cut, *, keep_order: bool) -> list[_ClassRanks]:
    """One sort per class (of the whole class-major matrix at once; ignored labels become -inf
    and are sliced off), then ``searchsorted`` for the tie-group boundaries (``side="left"``:
    tied scores count as at or above each other). Without ``keep_order`` the two halves of the
    classes are sorted and ranked on two threads where there are two cores: the sort is half of
    ``evaluate``'s time, and each class comes out the same either way."""
    class_scores = np.ascontiguousarray(scores.T)
    class_labels = np.ascontiguousarray(labels.T)
    ignored = class_labels == -1
    n_ignored = np.count_nonzero(ignored, axis=1)
    masked = np.where(ignored, -np.inf, class_scores) if n_ignored.any() else class_scores
    if keep_order:
        orders = np.argsort(masked, axis=1)
        ranked = np.take_along_axis(masked, orders, axis=1)
    else:
        ranked = masked.copy() if masked is class_scores else masked

    def ranks_of(classes: range) -> list[_ClassRanks]:
        if not keep_order:
            ranked[classes.start:classes.stop].sort(axis=1)
        result = []
        for c in classes:
            skip = n_ignored[c]
            positive_images = np.flatnonzero(class_labels[c] == 1)
            positive_scores = class_scores[c, positive_images]
            ascending = np.argsort(positive_scores)
            positive_images, positive_scores = positive_images[ascending], positive_scores[ascending]
            valid_scores = ranked[c, skip:]
            valid_below = np.searchsorted(valid_scores, positive_scores, side="left")
            valid_below_cut = int(np.searchsorted(valid_scores, cut, side="left"))
            result.append(
                _ClassRanks(
                    positive_images,
                    np.searchsorted(positive_scores, positive_scores, side="left"),
                    valid_below,
                    int(np.searchsorted(positive_scores, cut, side="left")),
                    valid_below_cut,
                    len(valid_scores),
                    orders[c, skip:] if keep_order else None,
                    _buckets(valid_below, valid_below_cut, len(valid_scores)) if keep_order else None,
                )
            )
        return result

    n_classes = len(n_ignored)
    if keep_order or _THREADS < 2 or n_classes < 2:
        return ranks_of(range(n_classes))
    half = n_classes // 2
    first, second = _pool().map(ranks_of, (range(half), range(half, n_classes)))
    return first + second


def _at_or_above(ranks: _ClassRanks) -> tuple[np.ndarray, np.ndarray]:
    """For each positive j (ascending score): positives and non-ignored labels scored ≥ s_j."""
    return len(ranks.positive_images) - ranks.positives_below, ranks.n_valid - ranks.valid_below


def _class_counts(all_ranks: list[_ClassRanks], weights: np.ndarray | None) -> tuple[np.ndarray, ...]:
    """Per class (last axis): AP (NaN without positives), positives and non-ignored labels at or
    above the threshold, and positives. With ``weights`` (N×B bootstrap counts, one column per
    replicate) each image counts ``weight`` times and every array gets a leading replicate axis."""
    narrow = None if weights is None else _narrow(weights)
    if weights is None or _THREADS < 2:
        columns = [_one_class_counts(ranks, weights, narrow) for ranks in all_ranks]
    else:
        columns = list(_pool().map(lambda ranks: _one_class_counts(ranks, weights, narrow), all_ranks))
    return tuple(np.stack(values, axis=-1) for values in zip(*columns))


_THREADS = min(2, usable_cores())
"""Threads for the classes of a bootstrap chunk and for ``evaluate``'s class-major sort: NumPy's
sorts, gathers and sums release the GIL, so two cores share the work; results do not depend on
it (each class is computed alone)."""


@functools.cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(_THREADS, thread_name_prefix="metrics")


def _narrow(weights: np.ndarray) -> np.ndarray:
    """The bootstrap counts as uint8 when they fit (they do unless an image is drawn more than
    255 times): gathering a quarter of the bytes is most of the speed of ``_bucket_sums``."""
    return weights.astype(np.uint8) if weights.max(initial=0) <= 255 else weights


def _one_class_counts(ranks: _ClassRanks, weights: np.ndarray | None, narrow: np.ndarray | None = None) -> tuple:
    """``AP = (1/|P|) Σ_j TP(≥ s_j) / V(≥ s_j)``; weighted, duplicates tie, so
    ``AP = Σ_j w_j TP_w(≥ s_j) / V_w(≥ s_j) / Σ_j w_j`` (NaN when no positive was drawn).
    ``narrow`` is ``_narrow(weights)``, used to count the non-ignored labels."""
    if weights is None:
        n_positive = len(ranks.positive_images)
        positives_above, valid_above = _at_or_above(ranks)
        ap = np.mean(positives_above / valid_above) if n_positive else np.nan
        return ap, n_positive - ranks.positives_below_cut, ranks.n_valid - ranks.valid_below_cut, n_positive
    own = weights[ranks.positive_images]
    positive_sums = _cumulative(own)
    valid_sums = _bucket_sums(narrow, ranks.valid_order, ranks.buckets.starts)
    n_positive, n_valid = positive_sums[-1], valid_sums[-1]
    positives_above = n_positive - positive_sums[ranks.positives_below]
    valid_above = n_valid - valid_sums[ranks.buckets.below]
    precision = np.divide(positives_above, valid_above, out=np.zeros(own.shape), where=own > 0)
    total = (precision * own).sum(axis=0)
    ap = np.divide(total, n_positive, out=np.full(total.shape, np.nan), where=n_positive > 0)
    hit_thr = n_positive - positive_sums[ranks.positives_below_cut]
    return ap, hit_thr, n_valid - valid_sums[ranks.buckets.below_cut], n_positive


def _bucket_sums(weights: np.ndarray, order: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Row s of the result (int32): the weights of the images ``order[:starts[s]]`` summed (the
    last row: all of them). Summing per bucket and then across the few buckets gives exactly
    the integers a cumulative sum over every image would, where they are needed, with far less
    work and memory traffic."""
    sums = np.zeros((len(starts) + 1, weights.shape[1]), dtype=np.int32)
    if len(starts):
        per_bucket = np.add.reduceat(np.take(weights, order, axis=0), starts, axis=0, dtype=np.int32)
        np.cumsum(per_bucket, axis=0, out=sums[1:])
    return sums


def _cumulative(values: np.ndarray) -> np.ndarray:
    """Cumulative sums down the rows with a leading 0 row: row s holds the sum of the first s
    rows (down axis 0, every replicate column is added at once; in the counts' own integer
    type, which is exact and fastest)."""
    sums = np.zeros((values.shape[0] + 1, *values.shape[1:]), dtype=values.dtype)
    np.cumsum(values, axis=0, out=sums[1:])
    return sums


def _voc_average_precision(positives_above: np.ndarray, valid_above: np.ndarray) -> tuple[float, float]:
    """VOC2007 11-point and VOC2010+ all-point AP of one class from the (recall, precision) points
    at each positive's tie group, in ascending score (so recall does not increase along them).

    ``envelope[j]`` = highest precision at recall ≥ recall_j = running maximum from the lowest
    score. 11-point: for t = tenths/10 the points with ``10·TP ≥ tenths·|P|`` are a prefix (never
    empty: the lowest positive has recall 1); its envelope is its maximum. All-point: each
    point's recall gain over the next higher-scored point times its envelope. Points where only
    ignored labels or negatives were added never raise the envelope, so points at the positives
    alone give the devkit's values.
    """
    n_positive = positives_above[0]
    envelope = np.maximum.accumulate(positives_above / valid_above)
    reaching = np.searchsorted(-10 * positives_above, -np.arange(11) * n_positive, side="right")
    recall_gain = positives_above - np.append(positives_above[1:], 0)
    return float(envelope[reaching - 1].sum() / 11), float((recall_gain * envelope).sum() / n_positive)


def _image_map(scores: np.ndarray, labels: np.ndarray, sorted_rows: np.ndarray) -> float:
    """``emap``: AP per image over its classes, averaged over images with a positive label.

    Each row is sorted with its non-positives as -inf, so a row's positives come out last, in
    ascending score: the positives at or above one are those from its first tie-mate to the end
    of the row. The non-ignored labels at or above it come from a vectorised binary search in
    the row sorted with ignored labels as -inf. No loop over images.
    """
    n_images, n_classes = scores.shape
    valid = labels != -1
    valid_rows = sorted_rows if valid.all() else np.sort(np.where(valid, scores, -np.inf), axis=1)
    positive_rows = np.sort(np.where(labels == 1, scores, -np.inf), axis=1)
    flat = np.flatnonzero(positive_rows != -np.inf)
    rows = flat // n_classes
    values = positive_rows.ravel()[flat]
    starts_group = np.ones(len(flat), dtype=bool)
    starts_group[1:] = (values[1:] != values[:-1]) | (rows[1:] != rows[:-1])
    first_tied = np.maximum.accumulate(np.where(starts_group, np.arange(len(flat)), 0))
    per_image = np.bincount(rows, minlength=n_images)
    positives_above = np.cumsum(per_image)[rows] - first_tied
    precision = positives_above / _count_at_or_above(valid_rows, rows, values)
    has_positive = per_image > 0
    per_image_ap = np.bincount(rows, weights=precision, minlength=n_images)[has_positive] / per_image[has_positive]
    return float(per_image_ap.mean())


def _count_at_or_above(sorted_rows: np.ndarray, rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    """How many entries of ``sorted_rows[rows[q]]`` are ≥ ``values[q]``, for every query q: a
    branchless binary search run on all queries at once, one power-of-two step at a time
    (``position`` only ever advances past entries < the value)."""
    width = sorted_rows.shape[1]
    flat = sorted_rows.ravel()
    position = rows * width
    end = position + width
    step = 1 << (width.bit_length() - 1)
    while step:
        probe = position + step
        position += step * ((flat[np.minimum(probe, end) - 1] < values) & (probe <= end))
        step >>= 1
    return end - position


class _Counts(NamedTuple):
    """Per-class counts (last axis) from which every top-k and threshold metric follows."""

    hit_top: np.ndarray
    predicted_top: np.ndarray
    hit_thr: np.ndarray
    predicted_thr: np.ndarray
    positive: np.ndarray


def _top_k(scores: np.ndarray, sorted_rows: np.ndarray, k: int) -> np.ndarray:
    """N×C mask of each row's k highest scores. Rows where more than k scores reach the k-th
    largest (a tie across the cut) keep the scores above it and fill the remaining slots with
    the tied classes of lowest index."""
    kth_largest = sorted_rows[:, -k, None]
    predicted = scores >= kth_largest
    crowded = np.flatnonzero(np.count_nonzero(predicted, axis=1) > k)
    if crowded.size:
        above = scores[crowded] > kth_largest[crowded]
        tied = scores[crowded] == kth_largest[crowded]
        room = k - above.sum(axis=1, keepdims=True)
        predicted[crowded] = above | (tied & (np.cumsum(tied, axis=1) <= room))
    return predicted


def _count_metrics(counts: _Counts, k: int, n_images: int) -> dict[str, np.ndarray]:
    """The top-k and threshold families from per-class counts (any leading replicate axis)."""
    ground = counts.positive
    values = {}
    for family, hits, predicted in (
        ("top", counts.hit_top, counts.predicted_top),
        ("thr", counts.hit_thr, counts.predicted_thr),
    ):
        cp, cr, cf1_mean = _class_means(hits, predicted, ground)
        slots = k * n_images if family == "top" else predicted.sum(axis=-1)
        op = _ratio(hits.sum(axis=-1), slots)
        overall_recall = _ratio(hits.sum(axis=-1), ground.sum(axis=-1))
        values.update({f"cp_{family}": cp, f"cr_{family}": cr, f"op_{family}": op, f"or_{family}": overall_recall})
        values[f"of1_{family}"] = _harmonic(op, overall_recall)
        values[f"cf1_{family}"] = cf1_mean if family == "top" else _harmonic(cp, cr)
    values["cf1_harmonic_top"] = _harmonic(values["cp_top"], values["cr_top"])
    return values


def _ratio(numerator, denominator) -> np.ndarray:
    """``numerator / denominator`` with 0/0 = 0."""
    numerator, denominator = np.broadcast_arrays(np.asarray(numerator, float), np.asarray(denominator, float))
    return np.divide(numerator, denominator, out=np.zeros(numerator.shape), where=denominator > 0)


def _harmonic(a, b) -> np.ndarray:
    """``2ab / (a + b)`` with 0 when both are 0."""
    return _ratio(2 * a * b, a + b)


def _class_means(hits, predicted, ground):
    """cp over all classes; cr and the mean per-class F1 over classes with positives (NaN when
    there are none, which only a bootstrap replicate can meet)."""
    cp = _ratio(hits, predicted).mean(axis=-1)
    has_positives = ground > 0
    n_with = has_positives.sum(axis=-1)
    recall_sum = np.where(has_positives, _ratio(hits, ground), 0.0).sum(axis=-1)
    f1_sum = np.where(has_positives, _ratio(2 * hits, predicted + ground), 0.0).sum(axis=-1)
    cr = np.divide(recall_sum, n_with, out=np.full(np.shape(n_with), np.nan), where=n_with > 0)
    cf1 = np.divide(f1_sum, n_with, out=np.full(np.shape(n_with), np.nan), where=n_with > 0)
    return cp, cr, cf1


def _mean_over_defined(values: np.ndarray) -> np.ndarray:
    """Mean over the last axis ignoring NaN; NaN where every value is NaN."""
    defined = ~np.isnan(values)
    n_defined = defined.sum(axis=-1)
    total = np.where(defined, values, 0.0).sum(axis=-1)
    return np.divide(total, n_defined, out=np.full(total.shape, np.nan), where=n_defined > 0)


def _resampled_counts(n_images: int, n_replicates: int, seed: int) -> Iterator[np.ndarray]:
    """Bootstrap counts (replicates × images, int32) in chunks of about a million entries; one
    ``rng.integers`` call per replicate keeps the stream independent of the chunk size."""
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_ELEMENTS // n_images)
    for start in range(0, n_replicates, chunk):
        size = min(chunk, n_replicates - start)
        draws = np.stack([rng.integers(0, n_images, n_images) for _ in range(size)])
        flat = (draws + n_images * np.arange(size)[:, None]).ravel()
        yield np.bincount(flat, minlength=size * n_images).reshape(size, n_images).astype(np.int32)


def _check_replicates(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise BadInput(f"n={n!r}: the number of bootstrap resamples must be a positive integer")


def _interval(values: np.ndarray) -> tuple[float | None, float | None]:
    """The 95% percentile interval of the defined (non-NaN) replicate values."""
    values = values[~np.isnan(values)]
    if values.size == 0:
        return None, None
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def bootstrap(
    scores,
    labels,
    n: int,
    seed: int = 0,
    keys: Sequence[str] = ("map", "cf1_top3", "of1_top3"),
    *,
    k: int = 3,
    threshold: float = 0.5,
) -> dict[str, tuple[float | None, float | None]]:
    """95% percentile intervals ``{key: (low, high)}`` from ``n`` resamples of the images.

    ``keys`` may be ``map`` and any top-k or threshold key that ``evaluate`` returns for the
    same ``k`` and ``threshold``; the resampling scheme is in the module docstring.
    """
    scores, labels = validate(scores, labels)
    _require_positive(labels)
    _check_replicates(n)
    names = _keys(k, threshold, labels.shape[1])
    unknown = [key for key in keys if key not in names]
    if unknown:
        raise BadInput(f"cannot bootstrap {unknown[0]!r}; choose from {', '.join(names)}")
    prepared = _Resampling(scores, labels, k, threshold)
    replicates: dict[str, list[np.ndarray]] = {key: [] for key in keys}
    for weights in _resampled_counts(labels.shape[0], n, seed):
        counted = prepared.counted(np.ascontiguousarray(weights.T))
        for key in keys:
            replicates[key].append(counted[names[key]])
    return {key: _interval(np.concatenate(values)) for key, values in replicates.items()}


class _Resampling:
    """One score set ready for weighted evaluation: its class rankings and, per class, the
    images that predict it in the top k (and those that are hits), whose weighted counts are sums."""

    def __init__(self, scores: np.ndarray, labels: np.ndarray, k: int, threshold: float):
        self.k, self.n_images = k, labels.shape[0]
        self.all_ranks = _class_ranks(scores, labels, _logit_cut(threshold, scores.dtype), keep_order=True)
        predicted_top = _top_k(scores, np.sort(scores, axis=1), k)
        self.top_images = [
            [np.flatnonzero(column) for column in mask.T] for mask in (predicted_top & (labels == 1), predicted_top)
        ]

    def counted(self, columns: np.ndarray) -> dict[str, np.ndarray]:
        """Every count-based metric and ``map`` (internal names) for each replicate column of
        ``columns`` (N×B bootstrap counts)."""
        class_ap, hit_thr, predicted_thr, n_positive = _class_counts(self.all_ranks, columns)
        hit_top, predicted_top_count = (
            np.stack([columns[images].sum(axis=0) for images in per_class], axis=-1) for per_class in self.top_images
        )
        counts = _Counts(hit_top, predicted_top_count, hit_thr, predicted_thr, n_positive)
        counted = _count_metrics(counts, self.k, self.n_images)
        counted["map"] = _mean_over_defined(class_ap)
        return counted


def paired_bootstrap(scores_a, scores_b, labels, n: int, seed: int = 0) -> dict[str, Any]:
    """Compare two score sets on the same images and labels: ``map`` of each, the difference
    ``map_diff = map(B) − map(A)`` with its 95% paired-bootstrap interval (each resample of the
    images is applied to both), and per-class APs and differences ``B − A`` (``None`` for classes
    without positives)."""
    scores_a, labels = validate(scores_a, labels, names=("scores_a", "labels"))
    scores_b, _ = validate(scores_b, labels, names=("scores_b", "labels"))
    _require_positive(labels)
    _check_replicates(n)
    # the threshold cut (0.0 here) plays no part in map
    ranks_a, ranks_b = (_class_ranks(s, labels, 0.0, keep_order=True) for s in (scores_a, scores_b))
    ap_a, ap_b = (_class_counts(ranks, None)[0] for ranks in (ranks_a, ranks_b))
    differences = []
    for weights in _resampled_counts(labels.shape[0], n, seed):
        columns = np.ascontiguousarray(weights.T)
        map_a, map_b = (_mean_over_defined(_class_counts(ranks, columns)[0]) for ranks in (ranks_a, ranks_b))
        differences.append(map_b - map_a)
    map_a, map_b = float(ap_a[~np.isnan(ap_a)].mean()), float(ap_b[~np.isnan(ap_b)].mean())

    def listed(values: np.ndarray) -> list[float | None]:
        return [None if np.isnan(value) else float(value) for value in values]

    return {
        "map_a": map_a,
        "map_b": map_b,
        "map_diff": map_b - map_a,
        "map_diff_interval": _interval(np.concatenate(differences)),
        "per_class_ap_a": listed(ap_a),
        "per_class_ap_b": listed(ap_b),
        "per_class_ap_diff": listed(ap_b - ap_a),
        "n": int(n),
        "seed": int(seed),
    }


def two_level_bootstrap(
    runs_a: Sequence, runs_b: Sequence, labels, n: int, seed: int = 0, *, k: int = 3, keys: Sequence[str] | None = None
) -> dict[str, Any]:
    """Compare two groups of runs (several seeds per side) on the same images and labels.

    For ``map`` and each paper column at top k (or only ``keys``, a subset): the mean over each side's runs and the
    difference ``B − A`` of the means, with a 95% interval from a two-level bootstrap; and the
    probability of improvement ``P(B > A) = (1/(m_a m_b)) Σ_i Σ_j ([b_j > a_i] + ½[b_j = a_i])``
    over pairs of runs' mAP (Agarwal et al., 2021).

    Replicate r resamples the seeds of each side with replacement (``m_a`` then ``m_b`` run
    indices per replicate from ``numpy.random.default_rng((seed, 1))``) and the images with
    ``paired_bootstrap``'s counts (the same resample for every run: paired on images); its
    value is the mean over the drawn runs of B minus that of A. With one run per side this is
    ``paired_bootstrap``'s interval, which holds the runs fixed: it measures test-set noise
    only and says nothing about another seed.
    """
    labels = validate(runs_a[0], labels, names=("scores_a[0]", "labels"))[1]
    sides = []
    for name, runs in (("scores_a", runs_a), ("scores_b", runs_b)):
        if len(runs) == 0:
            raise BadInput(f"{name}: no runs; give at least one score set per side")
        sides.append([validate(s, labels, names=(f"{name}[{i}]", "labels"))[0] for i, s in enumerate(runs)])
    _require_positive(labels)
    _check_replicates(n)
    names = _keys(k, 0.5, labels.shape[1])
    paper = [key.format(k=k) for key, _ in PAPER_COLUMNS]
    keys = paper if keys is None else list(keys)
    if not set(keys) <= set(paper):
        raise BadInput(f"cannot compare {sorted(set(keys) - set(paper))[0]!r}; choose from {', '.join(paper)}")
    if keys == ["map"]:
        points = [[_map_only(s, labels) for s in side] for side in sides]
        prepared = [[_MapResampling(s, labels) for s in side] for side in sides]
    else:
        with warnings.catch_warnings():  # map and the top-k columns do not depend on the kind of score
            warnings.simplefilter("ignore")
            points = [[evaluate(s, labels, k=k) for s in side] for side in sides]
        prepared = [[_Resampling(s, labels, k, 0.5) for s in side] for side in sides]
    chunks: list[list[list[dict[str, np.ndarray]]]] = [[[] for _ in side] for side in sides]
    for weights in _resampled_counts(labels.shape[0], n, seed):
        columns = np.ascontiguousarray(weights.T)
        for side, side_chunks in zip(prepared, chunks):
            for run, run_chunks in zip(side, side_chunks):
                run_chunks.append(run.counted(columns))
    rng = np.random.default_rng((seed, 1))
    picks = [rng.integers(0, len(side), (n, len(side))) for side in sides]
    replicate = np.arange(n)[:, None]

    def resampled_means(side: int, key: str) -> np.ndarray:
        values = np.stack([np.concatenate([c[names[key]] for c in run]) for run in chunks[side]])
        return values[picks[side], replicate].mean(axis=1)

    columns_out = {}
    for key in keys:
        point_a, point_b = (np.array([p[key] for p in side]) for side in points)
        diff = float(point_b.mean() - point_a.mean())
        columns_out[key] = {
            "a": float(point_a.mean()), "b": float(point_b.mean()), "diff": diff,
            "std_a": float(point_a.std(ddof=1)) if len(point_a) > 1 else None,
            "std_b": float(point_b.std(ddof=1)) if len(point_b) > 1 else None,
            "interval": _interval(resampled_means(1, key) - resampled_means(0, key)),
        }
    map_a, map_b = (np.array([p["map"] for p in side]) for side in points)
    per_class = [np.array([[np.nan if ap is None else ap for ap in p["per_class_ap"]] for p in side]).mean(axis=0)
                 for side in points]

    def listed(values: np.ndarray) -> list[float | None]:
        return [None if np.isnan(value) else float(value) for value in values]

    return {
        "n_runs_a": len(sides[0]),
        "n_runs_b": len(sides[1]),
        "columns": columns_out,
        "map_a_runs": map_a.tolist(),
        "map_b_runs": map_b.tolist(),
        "probability_of_improvement": _probability_of_improvement(map_a, map_b),
        "per_class_ap_a": listed(per_class[0]),
        "per_class_ap_b": listed(per_class[1]),
        "per_class_ap_diff": listed(per_class[1] - per_class[0]),
        "n": int(n),
        "seed": int(seed),
    }


def _map_only(scores: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """``map`` and ``per_class_ap`` as ``evaluate`` gives them, without the other metrics."""
    class_ap = _class_counts(_class_ranks(scores, labels, 0.0, keep_order=False), None)[0]
    return {"map": float(class_ap[~np.isnan(class_ap)].mean()),
            "per_class_ap": [None if np.isnan(ap) else float(ap) for ap in class_ap]}


class _MapResampling:
    """``_Resampling`` for ``map`` alone (the threshold cut plays no part in it)."""

    def __init__(self, scores: np.ndarray, labels: np.ndarray):
        self.all_ranks = _class_ranks(scores, labels, 0.0, keep_order=True)

    def counted(self, columns: np.ndarray) -> dict[str, np.ndarray]:
        return {"map": _mean_over_defined(_class_counts(self.all_ranks, columns)[0])}


def _probability_of_improvement(a: np.ndarray, b: np.ndarray) -> float:
    """``P(B > A)``: the share of pairs (a_i, b_j) with b_j > a_i, ties counting half."""
    return float((b[None, :] > a[:, None]).mean() + 0.5 * (b[None, :] == a[:, None]).mean())


def format_table(
    metrics: Mapping[str, Any] | Sequence[tuple[str, Mapping[str, Any]]],
    tablefmt: str = "simple",
    *,
    k: int = 3,
) -> str:
    """The paper's columns (mAP, L-P, L-R, L-F1, O-P, O-R, O-F1) as percentages, one decimal.

    ``metrics`` is one ``evaluate`` result or a list of ``(label, result)`` rows. Headers name
    the metric key and the paper's column, e.g. ``cf1_top3 (L-F1)``; a missing or undefined
    value shows as ``-``.
    """
    keys = [(key.format(k=k), column) for key, column in PAPER_COLUMNS]
    headers = [f"{key} ({column})" for key, column in keys]
    if isinstance(metrics, Mapping):
        rows = [[_percent(metrics.get(key)) for key, _ in keys]]
    else:
        headers = ["run", *headers]
        rows = [[label, *(_percent(result.get(key)) for key, _ in keys)] for label, result in metrics]
    return tabulate(rows, headers=headers, tablefmt=tablefmt, floatfmt=".1f", missingval="-")


def _percent(value) -> float | None:
    """A fraction as a percentage; ``None`` (shown as ``-``) when missing or undefined."""
    if value is None or np.isnan(value):
        return None
    return 100 * float(value)
