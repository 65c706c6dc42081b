"""The metrics engine against scikit-learn, against loops written straight from METRICS.md,
against worked examples, and against the invariants METRICS.md lists."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import average_precision_score, precision_recall_fscore_support

from harness.errors import BadInput
from harness.metrics import (
    bootstrap,
    evaluate,
    format_table,
    paired_bootstrap,
    validate,
)

# --- an independent implementation: loops, straight from the definitions in METRICS.md ---


def reference(scores, labels, k=3, threshold=0.5):
    n, c_count = scores.shape
    aps, eleven, allpoint = [], [], []
    for c in range(c_count):
        valid = [i for i in range(n) if labels[i, c] != -1]
        pos = [i for i in valid if labels[i, c] == 1]
        if not pos:
            aps.append(None)
            continue
        total = 0.0
        for j in pos:
            hits = sum(1 for i in pos if scores[i, c] >= scores[j, c])
            seen = sum(1 for i in valid if scores[i, c] >= scores[j, c])
            total += hits / seen
        aps.append(total / len(pos))
        # (recall, precision) at every distinct score, highest first
        points = []
        for value in sorted({scores[i, c] for i in valid}, reverse=True):
            tp = sum(1 for i in pos if scores[i, c] >= value)
            seen = sum(1 for i in valid if scores[i, c] >= value)
            points.append((tp, tp / seen))
        eleven.append(
            sum(max([p for tp, p in points if 10 * tp >= t * len(pos)], default=0.0) for t in range(11)) / 11
        )
        recalls = [0.0] + [tp / len(pos) for tp, _ in points] + [1.0]
        precisions = [0.0] + [p for _, p in points] + [0.0]
        for i in range(len(precisions) - 2, -1, -1):
            precisions[i] = max(precisions[i], precisions[i + 1])
        allpoint.append(
            sum((recalls[i] - recalls[i - 1]) * precisions[i] for i in range(1, len(recalls)) if recalls[i] != recalls[i - 1])
        )
    defined = [ap for ap in aps if ap is not None]

    image_aps = []
    for i in range(n):
        valid = [c for c in range(c_count) if labels[i, c] != -1]
        pos = [c for c in valid if labels[i, c] == 1]
        if pos:
            image_aps.append(
                sum(
                    sum(1 for m in pos if scores[i, m] >= scores[i, j]) / sum(1 for m in valid if scores[i, m] >= scores[i, j])
                    for j in pos
                )
                / len(pos)
            )

    def family(predicted, count_ignored):
        tp = [0] * c_count
        np_ = [0] * c_count
        ng = [0] * c_count
        for i in range(n):
            for c in range(c_count):
                if labels[i, c] == 1:
                    ng[c] += 1
                if predicted[i][c] and (count_ignored or labels[i, c] != -1):
                    np_[c] += 1
                    tp[c] += labels[i, c] == 1
        return tp, np_, ng

    def div(a, b):
        return a / b if b else 0.0

    def harmonic(a, b):
        return div(2 * a * b, a + b)

    top = [[False] * c_count for _ in range(n)]
    for i in range(n):
        for c in sorted(range(c_count), key=lambda c: (-scores[i, c], c))[:k]:
            top[i][c] = True
    tp, np_, ng = family(top, count_ignored=True)
    with_pos = [c for c in range(c_count) if ng[c]]
    result = {
        "map": sum(defined) / len(defined),
        "map_zero_nopos": sum(defined) / c_count,
        "map_voc07_11pt": sum(eleven) / len(eleven),
        "map_voc_allpoint": sum(allpoint) / len(allpoint),
        "emap": sum(image_aps) / len(image_aps),
    }
    cp = sum(div(tp[c], np_[c]) for c in range(c_count)) / c_count
    cr = sum(tp[c] / ng[c] for c in with_pos) / len(with_pos)
    op, or_ = sum(tp) / (k * n), sum(tp) / sum(ng)
    result.update(
        {
            f"cp_top{k}": cp,
            f"cr_top{k}": cr,
            f"cf1_top{k}": sum(2 * tp[c] / (np_[c] + ng[c]) for c in with_pos) / len(with_pos),
            f"cf1_top{k}_harmonic": harmonic(cp, cr),
            f"op_top{k}": op,
            f"or_top{k}": or_,
            f"of1_top{k}": harmonic(op, or_),
        }
    )
    suffix = "" if threshold == 0.5 else repr(threshold)
    thresholded = [[1 / (1 + math.exp(-scores[i, c])) >= threshold for c in range(c_count)] for i in range(n)]
    tp_t, np_t, _ = family(thresholded, count_ignored=False)
    cp_t = sum(div(tp_t[c], np_t[c]) for c in range(c_count)) / c_count
    cr_t = sum(tp_t[c] / ng[c] for c in with_pos) / len(with_pos)
    op_t, or_t = div(sum(tp_t), sum(np_t)), sum(tp_t) / sum(ng)
    result.update(
        {
            f"cp_thr{suffix}": cp_t,
            f"cr_thr{suffix}": cr_t,
            f"cf1_thr{suffix}": harmonic(cp_t, cr_t),
            f"op_thr{suffix}": op_t,
            f"or_thr{suffix}": or_t,
            f"of1_thr{suffix}": harmonic(op_t, or_t),
            "n_classes_no_pos": c_count - len(defined),
            "n_classes_never_predicted": sum(1 for c in range(c_count) if np_[c] == 0),
            "per_class_ap": aps,
        }
    )
    return result


def assert_same(result, expected):
    assert list(result) == list(expected)
    for key, value in expected.items():
        if key == "per_class_ap":
            assert [v is None for v in result[key]] == [v is None for v in value]
            assert [v for v in result[key] if v is not None] == pytest.approx([v for v in value if v is not None], abs=1e-12)
        else:
            assert result[key] == pytest.approx(value, abs=1e-12), key


def tricky_data(seed, n=150, c=8):
    """Tied scores (one decimal), 5% ignored labels, class 1 without positives, class 2 never
    in anyone's top 3."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, c)) < 0.25).astype(np.int8)
    scores = np.round(rng.normal(size=(n, c)) + labels, 1)
    labels[rng.random((n, c)) < 0.05] = -1
    labels[:, 1] = np.where(labels[:, 1] == 1, 0, labels[:, 1])
    scores[:, 2] = -9.0
    return scores, labels


def sklearn_map(scores, labels):
    aps = []
    for c in range(scores.shape[1]):
        keep = labels[:, c] != -1
        if (labels[keep, c] == 1).any():
            aps.append(average_precision_score(labels[keep, c] == 1, scores[keep, c]))
    return float(np.mean(aps)), aps


# --- values ---


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_key_equals_the_loops_from_the_spec(seed):
    scores, labels = tricky_data(seed)
    result = evaluate(scores, labels)
    assert result["n_classes_no_pos"] == 1 and result["n_classes_never_predicted"] >= 1
    assert_same(result, reference(scores, labels))


def test_other_k_and_threshold_equal_the_loops_and_name_their_keys():
    scores, labels = tricky_data(3, n=80)
    result = evaluate(scores, labels, k=2, threshold=0.7)
    assert "cp_top2" in result and "cf1_top2_harmonic" in result and "cp_thr0.7" in result
    assert not any(key.endswith("top3") or key == "cp_thr" for key in result)
    assert_same(result, reference(scores, labels, k=2, threshold=0.7))


@pytest.mark.parametrize("seed", range(4))
def test_map_equals_sklearn_with_ties_and_ignored_labels(seed):
    rng = np.random.default_rng(seed)
    n, c = 700, 15
    labels = (rng.random((n, c)) < rng.uniform(0.01, 0.4, c)).astype(np.int8)
    scores = np.round(rng.normal(size=(n, c)) + labels * rng.uniform(0, 2, c), 1).astype(np.float32)
    labels[rng.random((n, c)) < 0.05] = -1
    labels[:, 0] = np.minimum(labels[:, 0], 0)
    expected, per_class = sklearn_map(scores, labels)
    result = evaluate(scores, labels)
    assert abs(result["map"] - expected) < 1e-9
    assert [ap for ap in result["per_class_ap"] if ap is not None] == pytest.approx(per_class, abs=1e-9)
    assert result["per_class_ap"][0] is None and result["map_zero_nopos"] == pytest.approx(expected * (c - 1) / c)


def test_top_k_and_threshold_families_equal_sklearn():
    scores, labels = tricky_data(4, n=400)
    k = 3
    # top-k built independently: stable sort of the negated scores puts lower indices first
    top = np.zeros(scores.shape, dtype=bool)
    np.put_along_axis(top, np.argsort(-scores, axis=1, kind="stable")[:, :k], True, axis=1)
    truth = labels == 1
    p, r, f, support = precision_recall_fscore_support(truth, top, average=None, zero_division=0)
    micro = precision_recall_fscore_support(truth, top, average="micro", zero_division=0)
    result = evaluate(scores, labels, k=k)
    has = support > 0
    assert result["cp_top3"] == pytest.approx(p.mean(), abs=1e-12)
    assert result["cr_top3"] == pytest.approx(r[has].mean(), abs=1e-12)
    assert result["cf1_top3"] == pytest.approx(f[has].mean(), abs=1e-12)
    assert (result["op_top3"], result["or_top3"], result["of1_top3"]) == pytest.approx(micro[:3], abs=1e-12)
    # threshold family: ignored entries count neither way (both sides 0 there)
    ignored = labels == -1
    predicted = (scores >= 0) & ~ignored
    p, r, _, _ = precision_recall_fscore_support(truth, predicted, average=None, zero_division=0)
    micro = precision_recall_fscore_support(truth, predicted, average="micro", zero_division=0)
    assert result["cp_thr"] == pytest.approx(p.mean(), abs=1e-12)
    assert result["cr_thr"] == pytest.approx(r[has].mean(), abs=1e-12)
    assert result["cf1_thr"] == pytest.approx(2 * p.mean() * r[has].mean() / (p.mean() + r[has].mean()), abs=1e-12)
    assert (result["op_thr"], result["or_thr"], result["of1_thr"]) == pytest.approx(micro[:3], abs=1e-12)


def test_top_k_ties_go_to_the_lower_class_index_and_ignored_labels_use_a_slot():
    scores = np.array([[1.0, 2.0, 2.0, 2.0, 2.0]])
    labels = np.array([[1, -1, 0, 0, 1]])
    result = evaluate(scores, labels)
    # predicted: classes 1, 2, 3 (ties to the lower index); class 1 is ignored but fills a slot
    assert result["op_top3"] == 0.0 and result["or_top3"] == 0.0
    assert result["n_classes_never_predicted"] == 2
    result = evaluate(scores, np.array([[0, 1, 0, 1, 0]]))
    assert result["op_top3"] == pytest.approx(2 / 3) and result["or_top3"] == 1.0


def test_voc07_11_point_and_allpoint_by_hand():
    # one class ranked 1 0 0 1 0 1 1 (P = 4): precision at the positives 1, 1/2, 1/2, 4/7.
    # AP = (1 + 1/2 + 1/2 + 4/7) / 4 = 9/14. Envelope: 1 at recall 1/4, 4/7 from recall 1/2 on.
    # 11-point: t = 0, .1, .2 reach recall 1/4 -> 1; the other 8 -> 4/7: (3 + 8·4/7) / 11 = 53/77.
    # all-point: 1/4·1 + 3/4·4/7 = 19/28.
    ranked = [1, 0, 0, 1, 0, 1, 1]
    scores = np.arange(len(ranked), 0, -1, dtype=float)[:, None]
    labels = np.array(ranked)[:, None]
    result = evaluate(scores, labels, k=1)
    assert result["map"] == pytest.approx(9 / 14)
    assert result["map_voc07_11pt"] == pytest.approx(53 / 77)
    assert result["map_voc_allpoint"] == pytest.approx(19 / 28)
    # ignored labels anywhere (first, between, last) change nothing
    ignored_scores = np.concatenate([[[10.0]], scores[:3], [[3.5]], scores[3:], [[-1.0]]])
    ignored_labels = np.concatenate([[[-1]], labels[:3], [[-1]], labels[3:], [[-1]]])
    again = evaluate(ignored_scores, ignored_labels, k=1)
    for key in ("map", "map_voc07_11pt", "map_voc_allpoint"):
        assert again[key] == pytest.approx(result[key])


def test_voc07_11_point_compares_recall_exactly():
    # 3 of 10 positives first (recall exactly 0.3 at precision 1), 3 negatives, 7 positives:
    # t = 0..0.3 -> 1, t = 0.4..1 -> 10/13 (the envelope), so 11pt = (4 + 7·10/13) / 11. The
    # devkit's floating grid (0.1·3 > 0.3) would give 10/13 at t = 0.3 too.
    ranked = [1, 1, 1, 0, 0, 0] + [1] * 7
    scores = np.arange(len(ranked), 0, -1, dtype=float)[:, None]
    result = evaluate(scores, np.array(ranked)[:, None], k=1)
    assert result["map_voc07_11pt"] == pytest.approx((4 + 70 / 13) / 11)


def devkit_voc07(scores, labels):
    """The VOC2007 devkit's VOCevalcls, transcribed: sort, cumulate, 11 thresholds 0:0.1:1."""
    order = np.argsort(-scores, kind="stable")
    gt = np.where(labels[order] == 1, 1, np.where(labels[order] == 0, -1, 0))
    tp, fp = np.cumsum(gt > 0), np.cumsum(gt < 0)
    recall = tp / (gt > 0).sum()
    with np.errstate(invalid="ignore"):
        precision = tp / (fp + tp)
    return sum(np.nanmax(precision[recall >= t], initial=0) for t in np.arange(11) * 0.1) / 11


def test_voc07_equals_the_devkit_without_ties():
    rng = np.random.default_rng(5)
    n = 300
    labels = np.zeros((n, 4), dtype=np.int8)
    for c, count in enumerate([7, 13, 17, 29]):  # recall never lands exactly on a tenth
        labels[rng.choice(n, count, replace=False), c] = 1
    labels[rng.random((n, 4)) < 0.03] = -1
    scores = rng.normal(size=(n, 4)) + labels
    expected = np.mean([devkit_voc07(scores[:, c], labels[:, c]) for c in range(4)])
    assert evaluate(scores, labels)["map_voc07_11pt"] == pytest.approx(expected, abs=1e-12)


# --- invariants (METRICS.md, "Checks that hold for any correct implementation") ---

small_matrices = st.tuples(st.integers(1, 12), st.integers(1, 6)).flatmap(
    lambda shape: st.tuples(
        arrays(np.float64, shape, elements=st.integers(-6, 6).map(lambda v: v / 2)),
        arrays(np.int8, shape, elements=st.sampled_from([1, 0, -1])),
    )
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_matrices, st.integers(1, 3), st.sampled_from([0.5, 0.25, 0.8]))
def test_property_equals_the_loops(data, k, threshold):
    scores, labels = data
    assume((labels == 1).any() and k <= scores.shape[1])
    assert_same(evaluate(scores, labels, k=k, threshold=threshold), reference(scores, labels, k, threshold))


@settings(max_examples=60, deadline=None)
@given(small_matrices, st.randoms(use_true_random=False))
def test_property_invariants(data, random):
    scores, labels = data
    assume((labels == 1).any() and scores.shape[1] >= 3)
    result = evaluate(scores, labels)
    op, or_ = result["op_top3"], result["or_top3"]
    assert result["of1_top3"] == (2 * op * or_ / (op + or_) if op + or_ else 0.0)
    if result["n_classes_no_pos"] == 0:
        assert result["cf1_top3"] <= result["cf1_top3_harmonic"] + 1e-12
    assert all(0.0 <= v <= 1.0 for v in result.values() if isinstance(v, float))
    # order of images
    permutation = list(range(len(scores)))
    random.shuffle(permutation)
    shuffled = evaluate(scores[permutation], labels[permutation])
    for key, value in result.items():
        assert shuffled[key] == (pytest.approx(value, abs=1e-12) if key != "per_class_ap" else value)
    # logits or probabilities: the ranking and top-k metrics do not change
    probabilities = evaluate(1 / (1 + np.exp(-scores)), labels)
    for key in ("map", "map_voc07_11pt", "map_voc_allpoint", "emap", "cp_top3", "cf1_top3", "of1_top3"):
        assert probabilities[key] == pytest.approx(result[key], abs=1e-12)


def test_cf1_can_exceed_the_harmonic_mean_with_classes_without_positives():
    # documented: cp averages a class without positives in as 0, cr and cf1 leave it out
    result = evaluate(np.array([[2.0, 1.0]]), np.array([[1, 0]]), k=1)
    assert result["cf1_top1"] == 1.0 and result["cf1_top1_harmonic"] == pytest.approx(2 / 3)


def test_perfect_ranking_gives_one_and_reversed_gives_the_minimum():
    rng = np.random.default_rng(6)
    n, c = 60, 5
    labels = (rng.random((n, c)) < 0.3).astype(np.int8)
    labels[0] = 1
    perfect = labels + rng.random((n, c)) * 0.5
    result = evaluate(perfect, labels)
    for key in ("map", "map_voc07_11pt", "map_voc_allpoint", "emap"):
        assert result[key] == 1.0
    reversed_result = evaluate(-perfect, labels)
    for column, ap in enumerate(reversed_result["per_class_ap"]):
        p = int(labels[:, column].sum())
        assert ap == pytest.approx(sum(j / (n - p + j) for j in range(1, p + 1)) / p)
        for _ in range(20):
            assert ap <= average_precision_score(labels[:, column], rng.random(n)) + 1e-12


# --- the real VOC2007 test label structure (counts from the official test split) ---

VOC07_TEST_IMAGES = 4952
VOC07_TEST_POSITIVES = [204, 239, 282, 172, 212, 174, 721, 322, 417, 127, 190, 418, 274, 222, 2007, 224, 97, 223, 259, 229]
VOC07_TEST_DIFFICULT = [1, 11, 7, 4, 28, 9, 54, 10, 128, 0, 57, 15, 5, 11, 90, 30, 1, 132, 0, 26]


def voc07_test_labels(seed=0):
    """Labels with the real per-class numbers of positives and difficult (ignored) labels."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((VOC07_TEST_IMAGES, 20), dtype=np.int8)
    for c, (positives, difficult) in enumerate(zip(VOC07_TEST_POSITIVES, VOC07_TEST_DIFFICULT)):
        chosen = rng.choice(VOC07_TEST_IMAGES, positives + difficult, replace=False)
        labels[chosen[:positives], c] = 1
        labels[chosen[positives:], c] = -1
    return labels


def test_voc07_label_structure():
    labels = voc07_test_labels()
    assert (labels == 1).sum() == 7013 and (labels == -1).sum() == 619
    rng = np.random.default_rng(1)
    scores = np.round(rng.normal(size=labels.shape) + 1.5 * (labels == 1), 1).astype(np.float32)
    result = evaluate(scores, labels)
    assert abs(result["map"] - sklearn_map(scores, labels)[0]) < 1e-9
    assert result["n_classes_no_pos"] == 0 and len(result["per_class_ap"]) == 20
    hits = result["op_top3"] * 3 * VOC07_TEST_IMAGES
    assert hits == pytest.approx(round(hits)) and result["or_top3"] == pytest.approx(hits / 7013)
    # difficult labels scored highest of all do not cost AP (they are ignored) ...
    perfect = np.where(labels == -1, 9.0, labels.astype(np.float32))
    assert evaluate(perfect, labels)["map"] == 1.0
    # ... but they fill top-3 slots without being hits
    assert evaluate(perfect, labels)["op_top3"] < evaluate(labels.astype(np.float32), labels)["op_top3"]


# --- validation and edge cases ---


@pytest.mark.parametrize(
    ("scores", "labels", "message"),
    [
        ([[0.0, np.nan], [np.inf, 1.0], [np.nan, 0.0]], [[1, 0]] * 3, "scores: 3 non-finite value(s) (NaN or inf); first at row 0, column 1 (nan)"),
        ([[0.0, -np.inf]], [[1, 0]], "1 non-finite value(s) (NaN or inf); first at row 0, column 1 (-inf)"),
        (np.zeros((2, 3)), np.zeros((3, 2)), "scores has shape (2, 3) but labels has shape (3, 2)"),
        ([[0.0, 1.0]], [[1, 2]], "labels: 1 value(s) outside {1, 0, -1}; first at row 0, column 1 (2)"),
        ([[0.0, 1.0]], [[1, 0.5]], "first at row 0, column 1 (0.5)"),
        (np.zeros((0, 3)), np.zeros((0, 3)), "scores: empty array of shape (0, 3)"),
        ([0.0, 1.0], [1, 0], "expected a 2-D array"),
        ([["a", "b"]], [[1, 0]], "expected numbers"),
    ],
)
def test_validate_refuses_bad_input_in_one_line(scores, labels, message):
    with pytest.raises(BadInput) as error:
        validate(scores, labels)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert error.value.exit_code == 2


def test_validate_names_the_arrays_and_returns_clean_arrays():
    with pytest.raises(BadInput, match=r"^run/s\.npy: 1 non-finite"):
        validate([[np.nan]], [[1]], names=("run/s.npy", "run/l.npy"))
    scores, labels = validate(np.ones((2, 2), dtype=np.float32), [[1.0, 0.0], [-1.0, 1.0]])
    assert scores.dtype == np.float32 and labels.dtype == np.int8


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"k": 0}, "k=0"), ({"k": 5}, "k=5"), ({"threshold": 1.0}, "threshold=1.0"), ({"threshold": 0}, "threshold=0.0")],
)
def test_bad_k_and_threshold(kwargs, message):
    with pytest.raises(BadInput, match=message):
        evaluate(np.zeros((2, 4)), np.ones((2, 4)), **kwargs)


def test_no_positive_anywhere_is_an_error():
    with pytest.raises(BadInput, match="no positive label"):
        evaluate(np.zeros((3, 2)), [[0, -1], [0, 0], [-1, 0]])


def test_result_is_plain_json():
    scores, labels = tricky_data(7, n=40)
    result = evaluate(scores, labels)
    assert json.loads(json.dumps(result, allow_nan=False)) == result


def test_docstring_examples():
    import doctest

    import harness.metrics

    assert doctest.testmod(harness.metrics).failed == 0


def test_format_table_shows_the_paper_columns_in_percent():
    scores, labels = tricky_data(8, n=60)
    result = evaluate(scores, labels)
    text = format_table(result)
    for header in ("map (mAP)", "cp_top3 (L-P)", "cr_top3 (L-R)", "cf1_top3 (L-F1)", "op_top3 (O-P)", "or_top3 (O-R)", "of1_top3 (O-F1)"):
        assert header in text
    assert f"{100 * result['map']:.1f}" in text.splitlines()[-1]
    rows = format_table([("run-a", result), ("old", {"map": 0.5})], tablefmt="github").splitlines()
    assert rows[0].startswith("| run") and "run-a" in rows[2] and "50.0" in rows[3] and rows[3].count("-") >= 6


# --- bootstrap ---


def resample(seed, n_images, replicate=0):
    """The documented resampling: replicate r uses the r-th rng.integers(0, N, N) call."""
    rng = np.random.default_rng(seed)
    for _ in range(replicate + 1):
        index = rng.integers(0, n_images, n_images)
    return index


def test_bootstrap_replicate_equals_evaluate_on_the_resampled_images():
    scores, labels = tricky_data(9, n=120)
    keys = ("map", "cf1_top3", "of1_top3", "cp_thr", "cf1_top3_harmonic")
    intervals = bootstrap(scores, labels, 1, seed=11, keys=keys)
    index = resample(11, len(scores))
    expected = evaluate(scores[index], labels[index])
    for key in keys:
        low, high = intervals[key]
        assert low == high == pytest.approx(expected[key], abs=1e-12), key


def test_bootstrap_is_reproducible_and_brackets_the_estimate():
    scores, labels = tricky_data(10, n=300)
    first = bootstrap(scores, labels, 200, seed=3)
    assert first == bootstrap(scores, labels, 200, seed=3)
    assert first != bootstrap(scores, labels, 200, seed=4)
    result = evaluate(scores, labels)
    for key, (low, high) in first.items():
        assert low < result[key] < high


def test_bootstrap_with_other_k_and_threshold_and_bad_keys():
    scores, labels = tricky_data(12, n=100)
    intervals = bootstrap(scores, labels, 1, seed=2, keys=("cf1_top2", "of1_thr0.7"), k=2, threshold=0.7)
    index = resample(2, len(scores))
    expected = evaluate(scores[index], labels[index], k=2, threshold=0.7)
    assert intervals["of1_thr0.7"][0] == pytest.approx(expected["of1_thr0.7"], abs=1e-12)
    with pytest.raises(BadInput, match="cannot bootstrap 'emap'"):
        bootstrap(scores, labels, 10, keys=("emap",))
    with pytest.raises(BadInput, match="n=0"):
        bootstrap(scores, labels, 0)


def test_paired_bootstrap():
    scores, labels = tricky_data(13, n=200)
    better = scores + 2.0 * (labels == 1)
    result = paired_bootstrap(scores, better, labels, 1, seed=5)
    index = resample(5, len(scores))
    expected = evaluate(better[index], labels[index])["map"] - evaluate(scores[index], labels[index])["map"]
    assert result["map_diff_interval"][0] == pytest.approx(expected, abs=1e-12)
    assert result["map_a"] == evaluate(scores, labels)["map"] and result["map_b"] == evaluate(better, labels)["map"]
    assert result["map_diff"] == result["map_b"] - result["map_a"] > 0
    assert result["per_class_ap_diff"][1] is None
    assert result["per_class_ap_diff"][0] == pytest.approx(result["per_class_ap_b"][0] - result["per_class_ap_a"][0])
    low, high = paired_bootstrap(scores, better, labels, 300, seed=5)["map_diff_interval"]
    assert 0 < low < result["map_diff"] < high
    same = paired_bootstrap(scores, scores, labels, 50)
    assert same["map_diff"] == 0 and same["map_diff_interval"] == (0.0, 0.0)
