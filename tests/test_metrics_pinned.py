"""``evaluate`` at COCO size pinned to the values it gave before its speed-ups: every faster
path (such as the two-thread class sort) must give the same bits, not merely close values."""

from __future__ import annotations

import hashlib
import json

import numpy as np

from harness.metrics import evaluate

PINNED = {
    'map': 0.5689853601227671,
    'map_zero_nopos': 0.5689853601227671,
    'map_voc07_11pt': 0.5641395401855847,
    'map_voc_allpoint': 0.5694516909379485,
    'emap': 0.6480956981731468,
    'cp_top3': 0.4481253783842064,
    'cr_top3': 0.5249845382054399,
    'cf1_top3': 0.4667110035597378,
    'cf1_top3_harmonic': 0.48351967402337687,
    'op_top3': 0.5033344129689148,
    'or_top3': 0.5253636379397029,
    'of1_top3': 0.5141131512090019,
    'cp_thr': 0.43690115469146046,
    'cr_thr': 0.6002192069802857,
    'cf1_thr': 0.505701120697269,
    'op_thr': 0.4903847515470779,
    'or_thr': 0.6003623376848529,
    'of1_thr': 0.5398291477653587,
    'n_classes_no_pos': 0,
    'n_classes_never_predicted': 0,
}
PINNED_FIRST_CLASS_APS = [0.5922434692077064, 0.6266195752667039, 0.5478812969229944, 0.48883952210892756, 0.5512316807752324, 0.48599624085889076]
PINNED_SHA256 = '87dc70214777993993280b29fbcd25c7a9fd8c1150ee5f37bb34ec5c51ef547e'
"""sha256 of ``json.dumps(evaluate(...))``: every per-class AP as well."""


def coco_sized():
    """40,137 × 80 float32 logits with per-class positive rates around 3.6%, some ignored labels
    and a row in 50 rounded to integers (ties within and across images)."""
    rng = np.random.default_rng(7)
    rates = rng.lognormal(0.0, 0.8, 80)
    rates = np.clip(rates * 0.036 / rates.mean(), 0.002, 0.5)
    labels = (rng.random((40_137, 80)) < rates).astype(np.int8)
    logits = np.where(labels == 1, rng.normal(0.5, 2.0, labels.shape), rng.normal(-3.0, 1.5, labels.shape))
    scores = logits.astype(np.float32)
    labels[::97, 3] = -1
    labels[5::89, 11] = -1
    scores[::50] = np.round(scores[::50])
    return scores, labels


def test_evaluate_at_coco_size_gives_the_pinned_bits(monkeypatch):
    import harness.metrics as metrics

    scores, labels = coco_sized()
    for threads in (1, 2):
        monkeypatch.setattr(metrics, "_THREADS", threads)
        result = evaluate(scores, labels)
        assert {key: value for key, value in result.items() if key != "per_class_ap"} == PINNED
        assert result["per_class_ap"][:6] == PINNED_FIRST_CLASS_APS
        assert hashlib.sha256(json.dumps(result).encode()).hexdigest() == PINNED_SHA256
