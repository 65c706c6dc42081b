"""``bench compare`` and ``harness.compare``: the paired difference, and every way two runs differ."""

from __future__ import annotations

import json

from click.testing import CliRunner

from harness import compare
from harness.cli import main
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
    assert compare(a, b, n_bootstrap=20).differences == []
    printed = bench("compare", a, b, "--bootstrap", 20)
    assert "Same protocol, epochs, size, augmentation, loss, backbone and data." in printed.output


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
