"""Real tiny runs through ``submit`` and ``reproduce``: forged copies refused, genuine ones
verified bit for bit, forged scores caught by training again, and the tables saying which."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import TINY_PLUGIN

from harness.cli import main
from harness.errors import UserError
from harness.leaderboard import reproduce, submit
from harness.leaderboard.bundle import stored_bundles
from harness.leaderboard.reproduce import compare_scores, gpu_tolerance
from harness.leaderboard.rows import METRICS
from harness.metrics import evaluate
from harness.registry import Registry
from harness.results import cpu_model
from runs import make_run
from test_leaderboard_submit import TOY_PLUGIN, copy_run, edit_json, refused, rescore


def bench(*args):
    return CliRunner().invoke(main, [*map(str, args)])


@pytest.fixture(scope="module")
def tiny_runs(tiny_root, tmp_path_factory) -> dict:
    """Two seeds of a 2-epoch tiny run and a 1-epoch one, trained for real on the CPU."""
    out = tmp_path_factory.mktemp("runs")
    runs = {}
    for name, seed, epochs in ((0, 0, 2), (1, 1, 2), ("short", 2, 1)):
        result = bench("run", "--plugin", TINY_PLUGIN, "--dataset", "tiny", "--data-root", tiny_root, "--model",
                       "tiny-cnn", "--protocol", "smoke", "--size", "32", "--epochs", epochs, "--seed", seed,
                       "--device", "cpu", "--out", out, "--quiet")
        assert result.exit_code == 0, result.output
        runs[name] = out / f"tiny-tiny-cnn-flip-32-smoke-seed{seed}"
    return runs


def arrays(run_dir: Path) -> dict:
    with np.load(run_dir / "scores.npz") as data:
        return {key: data[key] for key in data.files}


@pytest.mark.slow
def test_forged_copies_of_a_real_run_are_refused_and_nothing_is_written_outside(tiny_runs, tmp_path):
    genuine = tiny_runs[0]
    outside = tmp_path / "outside"
    root = outside / "lb"
    assert bench("leaderboard", "submit", genuine, "--leaderboards", root, "--plugin", TINY_PLUGIN).exit_code == 0

    relabelled = copy_run(genuine, tmp_path / "relabelled")
    data = arrays(genuine)
    labels = data["labels"].copy()
    labels[(labels == 1) & (data["scores"] < 0)] = -1  # missed positives rewritten as ignored
    assert (labels != data["labels"]).any()
    rescore(relabelled, labels=labels)
    assert json.loads((relabelled / "result.json").read_text())["metrics"]["map"] > evaluate(data["scores"], data["labels"])["map"]
    refused(relabelled, root, TINY_PLUGIN, "relabelled/scores.npz: its ids and labels", "not dataset.fingerprint")

    halved = copy_run(genuine, tmp_path / "halved")
    half = len(data["ids"]) // 2
    rescore(halved, scores=data["scores"][:half], labels=data["labels"][:half], ids=data["ids"][:half])
    refused(halved, root, TINY_PLUGIN, "halved/scores.npz: its ids and labels", "not dataset.fingerprint")

    undeclared = copy_run(tiny_runs["short"], tmp_path / "undeclared")
    edit_json(undeclared / "result.json", lambda r: r["protocol"].update(deviations={}))
    refused(undeclared, root, TINY_PLUGIN, "undeclared/result.json: protocol.deviations.epochs is missing",
            "show 1 epoch(s) trained", "protocol 'smoke' has 20")

    later = copy_run(genuine, tmp_path / "later")
    edit_json(later / "result.json", lambda r: r.update(created="2031-05-05T05:05:05+00:00"))
    refused(later, root, TINY_PLUGIN, "later/result.json: already stored as submission")

    reformatted = copy_run(genuine, tmp_path / "reformatted")
    for name in ("result.json", "run.json", "log.json"):
        (reformatted / name).write_text(json.dumps(json.loads((reformatted / name).read_text()), indent=1) + " \n \n")
    refused(reformatted, root, TINY_PLUGIN, "reformatted/result.json: already stored as submission")

    for index, run_id in enumerate(("../../../../x", str(tmp_path / "absolute"))):
        pathlike = copy_run(genuine, tmp_path / f"pathlike{index}")
        edit_json(pathlike / "result.json", lambda r: r.update(run_id=run_id))
        refused(pathlike, root, TINY_PLUGIN, f"result.json: run_id {run_id!r} is not a plain name")

    reseeded = copy_run(genuine, tmp_path / "reseeded")
    rescore(reseeded, scores=data["scores"] + np.float32(0.25))
    refused(reseeded, root, TINY_PLUGIN, "reseeded/result.json: seed 0 of this configuration is already stored")

    written = sorted(p.relative_to(outside).as_posix() for p in outside.rglob("*") if p.is_file())
    assert written and all(p.startswith("lb/submissions/") for p in written), written
    assert not (tmp_path / "x").exists() and not (tmp_path / "absolute").exists()


@pytest.mark.slow
def test_reproduce_verifies_genuine_scores_and_catches_forged_ones(tiny_runs, tiny_root, tmp_path):
    root = tmp_path / "lb"
    genuine = submit(tiny_runs[0], root, Registry((TINY_PLUGIN,)))
    result = bench("leaderboard", "reproduce", genuine.id, "--leaderboards", root, "--data-root", tiny_root, "--quiet")
    assert result.exit_code == 0, result.output
    assert "verified (exact)" in result.output and str(genuine.verification_path) in result.output
    verification = json.loads(genuine.verification_path.read_text())
    assert verification["outcome"] == "exact" and verification["largest_difference"] == 0.0
    assert verification["content_sha256"] == genuine.content_sha256 and verification["hardware"]["cpu"] == cpu_model()
    assert verification["hardware"]["torch_threads"] == genuine.record.environment["torch_threads"]

    forged = copy_run(tiny_runs[1], tmp_path / "perfect")
    data = arrays(tiny_runs[1])
    perfect = np.where(data["labels"] == 1, np.float32(10), np.float32(-10))
    rescore(forged, scores=perfect)
    assert json.loads((forged / "result.json").read_text())["metrics"]["map"] == 1.0
    stored = submit(forged, root, Registry((TINY_PLUGIN,)))
    difference = np.abs(perfect.astype(np.float64) - data["scores"])  # what training seed 1 again gives, on a CPU
    row, column = np.unravel_index(np.argmax(difference), difference.shape)
    classes = stored.record.dataset.classes
    result = bench("leaderboard", "reproduce", stored.path, "--leaderboards", root, "--quiet")
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert (f"largest score difference {difference[row, column]:.6g} at image {str(data['ids'][row])!r}, class "
            f"{classes[column]!r}") in result.output
    assert not stored.verification_path.exists()
    outcome = reproduce(stored.id, root)
    assert not outcome.matches and outcome.comparison.metric_differences["map"] < -0.1

    assert bench("leaderboard", "build", "--leaderboards", root).exit_code == 0
    tables = root / "tables"
    md = (tables / "tiny-smoke.md").read_text()
    by_seed = {line.split("|")[15].strip(): line for line in md.splitlines() if "| reproduced " in line}
    assert "| verified " in by_seed["0"] and "| self-reported " in by_seed["1"]
    rows = {r["seeds"]: r["verification"] for r in csv.DictReader(io.StringIO((tables / "tiny-smoke.csv").read_text()))}
    assert rows == {"0": "verified", "1": "self-reported"}
    tex = [line for line in (tables / "tiny-smoke.tex").read_text().splitlines() if " & reproduced & " in line]
    assert sorted(line.split(" & ")[6] for line in tex) == ["self-reported", "verified"]
    html = (tables / "tiny-smoke.html").read_text()
    assert html.count('<span class="badge verified">verified</span>') == 1
    assert html.count('<span class="badge self-reported">self-reported</span>') == 1


def test_gpu_tolerance_is_half_the_pooled_seed_std_of_the_same_data_and_protocol(tmp_path, monkeypatch):
    plugin = tmp_path / "toy_plugin.py"
    plugin.write_text(TOY_PLUGIN)
    registry = Registry((str(plugin),))
    root = tmp_path / "lb"
    groups = {"flip": (0, 1, 2), "crop": (0, 1)}
    for aug, seeds in groups.items():
        for seed in seeds:
            submit(make_run(tmp_path / aug, aug=aug, seed=seed, gpu="NVIDIA H200", run_files=True), root, registry)
    target = submit(make_run(tmp_path / "mixup", aug="mixup", gpu="NVIDIA H200", run_files=True), root, registry)
    submit(make_run(tmp_path / "other", protocol="smoke", aug="flip", seed=5, gpu="x", run_files=True), root, registry)
    bundles = stored_bundles(root)
    tolerance = gpu_tolerance(target, bundles)
    for key, _ in METRICS:
        values = {aug: [json.loads((tmp_path / aug / f"toy-resnet101-{aug}-448-wang2019-seed{s}" / "result.json")
                                   .read_text())["metrics"][key] for s in seeds] for aug, seeds in groups.items()}
        pooled = (2 * np.var(values["flip"], ddof=1) + np.var(values["crop"], ddof=1)) / 3
        assert tolerance[key] == pytest.approx(0.5 * math.sqrt(pooled), rel=1e-12)
    lonely = [b for b in bundles if b.record.protocol.name == "smoke"][0]
    with pytest.raises(UserError, match="there is none yet: submit a second seed"):
        gpu_tolerance(lonely, bundles)
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = bench("leaderboard", "reproduce", target.id, "--leaderboards", root)
    assert result.exit_code == 1 and "(cuda:0), and this machine has no CUDA device" in result.output


def test_compare_scores_aligns_by_id_and_names_the_largest_difference():
    rng = np.random.default_rng(0)
    stored = rng.normal(size=(6, 3)).astype(np.float32)
    labels = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1], [1, 0, -1]], dtype=np.int8)
    ids = np.array([f"i{i}" for i in range(6)])
    order = np.array([3, 1, 5, 0, 2, 4])
    again = stored[order].copy()
    comparison, identical = compare_scores(stored, ids, labels, again, ids[order], ["a", "b", "c"])
    assert identical and comparison.largest_difference == 0.0 and comparison.image is None
    again[np.flatnonzero(order == 4)[0], 2] += np.float32(0.75)
    again[np.flatnonzero(order == 1)[0], 0] += np.float32(0.125)
    comparison, identical = compare_scores(stored, ids, labels, again, ids[order], ["a", "b", "c"])
    assert not identical and comparison.image == "i4" and comparison.class_name == "c"
    assert comparison.largest_difference == pytest.approx(0.75, abs=1e-6) and comparison.stored == float(stored[4, 2])
    with pytest.raises(UserError, match="other test images"):
        compare_scores(stored, ids, labels, again[:5], ids[order][:5], ["a", "b", "c"])
