"""``bench compare`` and ``harness.compare``: the paired difference, and every way two runs differ."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from harness import compare
from harness.cli import main
from harness.comparison import SEEDS_NEEDED
from harness.metrics import evaluate, paired_bootstrap, two_level_bootstrap
from harness.rundir import read_scores, write_scores
from runs import make_run


def bench(*args):
    return CliRunner().invoke(main, list(map(str, args)))


def test_a_2_epoch_baseline_against_a_1_epoch_method_lists_every_difference(tmp_path):
    baseline = make_run(tmp_path, model="resnet18", protocol="smoke", size=64, seed=0,
                        deviations={"epochs": {"protocol": 20, "used": 2}})
    method = make_run(tmp_path, model="my-head", backbone="resnet50", aug="mixup", size=96, loss="asl",
                      protocol="smoke", seed=0, score_seed=3,
                      deviations={"epochs": {"protocol": 20, "used": 1}, "sizes": {"protocol": [32], "used": [96]},
                                  "loss": {"protocol": "bce", "used": "asl", "version": "1", "plugin": {}}})
    result = compare(baseline, method, n_bootstrap=50)
    found = {d["field"]: (d["a"], d["b"]) for d in result.differences}
    assert found == {
        "epochs": (2, 1),
        "size": (64, 96),
        "augmentation": ("flip", "mixup"),
        "loss": ("bce", "asl"),
        "model": ("resnet18", "my-head"),
        "backbone": ("resnet18", "resnet50"),
        "deviations": ("epochs", "epochs, loss, sizes"),
    }
    printed = bench("compare", baseline, method, "--bootstrap", 50)
    assert printed.exit_code == 0, printed.output
    assert "The runs differ in more than the method (7)" in printed.output
    assert "epochs" in printed.output and "asl" in printed.output and "resnet50" in printed.output
    as_json = json.loads(bench("compare", baseline, method, "--bootstrap", 50, "--json").stdout)
    assert {d["field"] for d in as_json["differences"]} == set(found)


def test_runs_of_the_same_cell_differ_only_in_seed_and_say_so(tmp_path):
    a, b = make_run(tmp_path, seed=0), make_run(tmp_path, seed=1)
    assert compare(a, b, n_bootstrap=20).differences == [{"field": "seed", "a": 0, "b": 1}]
    printed = bench("compare", a, b, "--bootstrap", 20)
    assert "Same protocol, epochs, size, augmentation, loss, backbone and data; the seeds differ (A: 0, B: 1)." in printed.output


def test_other_protocols_and_data_are_named(tmp_path):
    a = make_run(tmp_path, protocol="smoke")
    b = make_run(tmp_path, protocol="wang2019", fingerprint="f" * 32, score_seed=5)
    fields = {d["field"] for d in compare(a, b, n_bootstrap=20).differences}
    assert {"protocol", "epochs", "batch size", "dataset fingerprint", "init"} <= fields


def test_bare_score_files_compare_without_knowing_how_they_were_trained(tmp_path):
    a, b = make_run(tmp_path, seed=0), make_run(tmp_path, seed=1)
    (a / "result.json").unlink()
    assert compare(a / "scores.npz", b / "scores.npz", n_bootstrap=20).differences is None
    printed = bench("compare", a / "scores.npz", b, "--bootstrap", 20)
    assert "How the runs were trained is unknown" in printed.output


def test_two_seeds_of_one_configuration_are_not_called_different(tmp_path):
    a, b = make_run(tmp_path, seed=0, n_test=300), make_run(tmp_path, seed=1, n_test=300)
    result = compare(a, b, n_bootstrap=300)
    scores_a, labels, _ = read_scores(a)
    scores_b = read_scores(b)[0]
    # the paired interval over test images alone may exclude 0; the verdict must not trust it
    assert result.paired["map_diff_interval"] == paired_bootstrap(scores_a, scores_b, labels, 300)["map_diff_interval"]
    assert not result.significant
    assert f"train at least {SEEDS_NEEDED} seeds of each" in result.verdict
    printed = bench("compare", a, b, "--bootstrap", 300)
    assert printed.exit_code == 0, printed.output
    assert "Not significant: with 1 run(s) of A, 1 of B the variance across seeds is unknown" in printed.output
    assert "is higher than" not in printed.output


def test_three_seeds_against_three_other_seeds_of_the_same_configuration_do_not_differ(tmp_path):
    a = [make_run(tmp_path, seed=s, n_test=300) for s in (0, 1, 2)]
    b = [make_run(tmp_path, seed=s, n_test=300) for s in (3, 4, 5)]
    result = compare(a, b, n_bootstrap=400)
    assert not result.significant and result.verdict.startswith("Not significant: the 95% interval")
    assert result.differences == [{"field": "seed", "a": [0, 1, 2], "b": [3, 4, 5]}]
    maps = [[evaluate(*read_scores(run)[:2])["map"] for run in side] for side in (a, b)]
    assert result.paired["map_a"] == pytest.approx(np.mean(maps[0]), abs=1e-12)
    assert result.columns["map"]["std_b"] == pytest.approx(np.std(maps[1], ddof=1), abs=1e-12)
    wins = np.mean([[(mb > ma) + 0.5 * (mb == ma) for mb in maps[1]] for ma in maps[0]])
    assert result.probability_of_improvement == pytest.approx(wins)


def _shifted(run, root, name, class_index=0, shift=2.0):
    """A copy of ``run`` whose positives of one class score ``shift`` higher."""
    scores, labels, ids = read_scores(run)
    scores[:, class_index] += shift * (labels[:, class_index] == 1)
    write_scores(root / name / "scores.npz", scores, labels, ids)
    return root / name


def test_a_real_shift_on_one_class_is_significant_with_seeds_on_both_sides(tmp_path):
    a = [make_run(tmp_path, seed=s, n_test=2000) for s in (0, 1, 2)]
    b = [_shifted(make_run(tmp_path, seed=s, n_test=2000), tmp_path, f"b{s}") for s in (3, 4, 5)]
    result = compare(a, b, n_bootstrap=400)
    low, high = result.columns["map"]["interval"]
    assert 0 < low <= result.columns["map"]["diff"] <= high
    assert result.significant and result.probability_of_improvement == 1.0
    assert result.verdict.startswith("Significant: B's mean map is higher than A's at the 95% level")
    assert set(result.columns) == {"map", "cp_top3", "cr_top3", "cf1_top3", "op_top3", "or_top3", "of1_top3"}
    assert result.largest_changes[0]["class"] == 0
    printed = bench("compare", *a, "--bootstrap", 400, "--", *b)
    assert printed.exit_code == 0, printed.output
    assert "A: 3 run(s)" in printed.output and "B: 3 run(s)" in printed.output
    assert "Significant: B's mean map is higher" in printed.output and "P(B > A) = 1.00 over 9 run pair(s)" in printed.output
    as_json = json.loads(bench("compare", *a, "--", *b, "--bootstrap", 400, "--json").stdout)
    assert as_json["columns"]["map"]["interval"] == list(result.columns["map"]["interval"])
    assert as_json["significant"] is True and as_json["runs_b"] == [str(run) for run in b]


def test_the_two_level_interval_covers_a_known_difference():
    """200 simulated comparisons of 4 seeds per side, each run's per-class quality drawn per
    seed: at least 90% of the 95% intervals cover the expected difference of mean mAP."""
    n_images, n_classes, n_seeds = 120, 3, 4
    rng = np.random.default_rng(123)

    def labels_drawn():
        labels = (rng.random((n_images, n_classes)) < 0.3).astype(np.int8)
        labels[0] = 1
        return labels

    def runs(signal, count, labels):
        quality = rng.normal(0, 0.4, (count, 1, n_classes))
        return [((signal + quality[i]) * (labels == 1) + rng.normal(0, 1.0, labels.shape)).astype(np.float32)
                for i in range(count)]

    expected = []
    for _ in range(400):
        labels = labels_drawn()
        expected.append(two_level_bootstrap(runs(1.0, 1, labels), runs(1.5, 1, labels), labels, 1,
                                            keys=("map",))["columns"]["map"]["diff"])
    truth = np.mean(expected)
    covered = 0
    for replicate in range(200):
        labels = labels_drawn()
        result = two_level_bootstrap(runs(1.0, n_seeds, labels), runs(1.5, n_seeds, labels), labels, 200,
                                     seed=replicate, keys=("map",))
        low, high = result["columns"]["map"]["interval"]
        covered += low <= truth <= high
    assert covered >= 180, covered


def test_runs_on_another_test_set_are_refused_on_either_side(tmp_path):
    a = [make_run(tmp_path, seed=s) for s in (0, 1)]
    other = make_run(tmp_path, seed=2, data_seed=9)
    printed = bench("compare", *a, "--", make_run(tmp_path, seed=3), other)
    assert printed.exit_code == 2 and "score different test sets" in printed.stderr
    assert len(printed.stderr.strip().splitlines()) == 1


def test_three_runs_without_a_separator_are_a_usage_error(tmp_path):
    runs = [make_run(tmp_path, seed=s) for s in (0, 1, 2)]
    printed = bench("compare", *runs)
    assert printed.exit_code == 2 and "got 3 runs without --" in printed.output
    printed = bench("compare", *runs, "--")
    assert printed.exit_code == 2 and "no runs after --" in printed.output
