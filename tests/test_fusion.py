"""Fusion plugins, ``harness.fusion.fuse_runs`` and ``bench fuse``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.errors import BadInput, UserError
from harness.fusion import fuse_runs
from harness.metrics import evaluate
from harness.registry import Registry
from harness.results import RunRecord
from harness.rundir import read_scores
from runs import make_run


def read_result(run_dir):
    return json.loads((run_dir / "result.json").read_text())


@pytest.fixture(scope="module")
def registry():
    return Registry()


def sigmoid(x):
    return 1 / (1 + np.exp(-np.asarray(x, dtype=np.float64)))


def fuse_cli(*args):
    return CliRunner().invoke(main, ["fuse", *map(str, args)])


def test_builtin_fusions_are_registered(registry):
    assert registry.get("fusion", "mean").spec.version == "1"
    assert registry.get("fusion", "mean-logits").spec.version == "1"


def test_mean_is_logit_of_mean_probability_and_stays_finite(registry):
    fuse = registry.get("fusion", "mean").spec.fuse
    a = np.array([[0.0, 2.0, -3.0, 800.0, -800.0]])
    b = np.array([[0.0, -2.0, 1.0, 790.0, -795.0]])
    fused = fuse([a, b])
    p = (sigmoid(a[0, :3]) + sigmoid(b[0, :3])) / 2
    np.testing.assert_allclose(fused[0, :3], np.log(p / (1 - p)), rtol=1e-12, atol=1e-12)
    assert np.isfinite(fused).all()
    assert fused[0, 3] > 780 and fused[0, 4] < -780  # saturated probabilities keep their order


def test_fused_scores_equal_hand_computation_on_stored_scores(tmp_path, registry):
    a = make_run(tmp_path, aug="flip", score_seed=1)
    b = make_run(tmp_path, aug="crop", score_seed=2)
    for method, expected in (
        ("mean", lambda x, y: np.log((sigmoid(x) + sigmoid(y)) / 2) - np.log(1 - (sigmoid(x) + sigmoid(y)) / 2)),
        ("mean-logits", lambda x, y: (x.astype(np.float64) + y) / 2),
    ):
        fused_dir = fuse_runs([a, b], tmp_path / method, registry.get("fusion", method)).path
        scores, labels, ids = read_scores(fused_dir)
        x, y = read_scores(a)[0], read_scores(b)[0]
        np.testing.assert_allclose(scores, expected(x, y), rtol=1e-6, atol=1e-6)
        assert scores.dtype == np.float32
        assert read_result(fused_dir)["metrics"] == evaluate(scores, labels)


def test_bench_fuse_map_is_the_map_of_the_mean_probability(tmp_path):
    a = make_run(tmp_path, aug="crop", size=512, score_seed=1)
    b = make_run(tmp_path, aug="mixup", size=512, score_seed=2)
    result = fuse_cli(a, b, "--out", tmp_path / "fused", "--name", "DistrEn")
    assert result.exit_code == 0, result.output
    fused = tmp_path / "fused" / "toy-resnet101-crop+mixup-512-wang2019-seed0-DistrEn"
    record = read_result(fused)
    (x, labels, _), (y, _, _) = read_scores(a), read_scores(b)
    assert record["metrics"]["map"] == evaluate((sigmoid(x) + sigmoid(y)) / 2, labels)["map"]
    assert record["kind"] == "fusion"
    assert record["fusion"]["name"] == "mean" and record["fusion"]["label"] == "DistrEn"
    assert [m["augmentation"] for m in record["members"]] == ["crop", "mixup"]
    assert record["model"]["name"] == "resnet101" and record["augmentation"] is None and record["size"] == 512
    assert record["dataset"] == read_result(a)["dataset"]
    assert str(fused) in result.output


def test_ids_in_a_different_order_are_aligned(tmp_path, registry):
    a = make_run(tmp_path, aug="flip", score_seed=1)
    b = make_run(tmp_path, aug="crop", score_seed=2)
    b_shuffled = make_run(tmp_path, aug="crop", score_seed=2, shuffle=7, run_id="shuffled")
    assert list(read_scores(b_shuffled)[2]) != list(read_scores(b)[2])
    mean = registry.get("fusion", "mean")
    plain = read_scores(fuse_runs([a, b], tmp_path / "plain", mean).path)
    mixed = read_scores(fuse_runs([a, b_shuffled], tmp_path / "mixed", mean).path)
    for left, right in zip(plain, mixed):
        np.testing.assert_array_equal(left, right)


def test_different_fingerprints_are_refused_naming_both_runs(tmp_path):
    a = make_run(tmp_path, aug="flip")
    b = make_run(tmp_path, aug="crop", fingerprint="other")
    result = fuse_cli(a, b, "--out", tmp_path / "fused")
    assert result.exit_code == 1
    message = result.output.strip()
    assert message.count("\n") == 0 and str(a) in message and str(b) in message and "fingerprint" in message
    assert not (tmp_path / "fused").exists()


def test_different_ids_are_refused_naming_the_first_missing_id(tmp_path, registry):
    a = make_run(tmp_path, aug="flip")
    b = make_run(tmp_path, aug="crop", drop=3, shuffle=1)
    result = fuse_cli(a, b, "--out", tmp_path / "fused")
    assert result.exit_code == 2 and "score different test sets" in result.output
    for members in ([a, b], [b, a]):
        with pytest.raises(BadInput) as refused:
            fuse_runs(members, tmp_path / "fused", registry.get("fusion", "mean"))
        assert f"3 only in {a} (first 'img0057')" in str(refused.value) and f"only in {b}" not in str(refused.value)
    assert not (tmp_path / "fused").exists()


def test_disagreeing_labels_are_refused(tmp_path, registry):
    a = make_run(tmp_path, aug="flip")
    b = make_run(tmp_path, aug="crop", data_seed=5, fingerprint=RunRecord.read(a).dataset.fingerprint)
    with pytest.raises(UserError, match="score different test sets: labels differ for image 'img"):
        fuse_runs([a, b], tmp_path / "fused", registry.get("fusion", "mean"))


def test_protocol_and_member_count_are_checked(tmp_path, registry):
    a = make_run(tmp_path, aug="flip")
    b = make_run(tmp_path, aug="crop", protocol="smoke")
    mean = registry.get("fusion", "mean")
    with pytest.raises(UserError, match="different protocol hashes"):
        fuse_runs([a, b], tmp_path / "fused", mean)
    with pytest.raises(UserError, match="at least two"):
        fuse_runs([a], tmp_path / "fused", mean)


def test_fused_run_is_not_overwritten(tmp_path):
    a = make_run(tmp_path, aug="flip", size=384)
    b = make_run(tmp_path, aug="flip", size=512)
    assert fuse_cli(a, b, "--out", tmp_path / "f", "--name", "ScaleEn").exit_code == 0
    again = fuse_cli(b, a, "--out", tmp_path / "f", "--name", "ScaleEn")
    assert again.exit_code == 1 and "finished run" in again.output
    record = json.loads((tmp_path / "f" / "toy-resnet101-flip-384+512-wang2019-seed0-ScaleEn" / "result.json").read_text())
    assert record["size"] is None and record["augmentation"]["name"] == "flip"


def test_fuse_json_prints_the_fused_record(tmp_path):
    a = make_run(tmp_path, aug="flip", size=384)
    b = make_run(tmp_path, aug="flip", size=512)
    result = fuse_cli(a, b, "--out", tmp_path / "f", "--name", "ScaleEn", "--json")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed == read_result(tmp_path / "f" / printed["run_id"]) and printed["fusion"]["label"] == "ScaleEn"
