"""Real tiny runs through ``submit`` and ``reproduce``: forged copies refused, genuine ones
verified bit for bit, forged scores caught by training again, and the tables saying which."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import TINY_PLUGIN

from harness.cli import main
from harness.errors import UserError, cut
from harness.leaderboard import reproduce, submit
from harness.leaderboard.store import stored_bundles
from harness.leaderboard.reproduce import TOLERANCE_CAP, compare_scores, gpu_tolerance, record_difference
from harness.leaderboard.rows import METRICS
from harness.leaderboard.signing import check_signed
from harness.metrics import evaluate
from harness.naming import sha256_json, sha256_of
from harness.registry import Registry
from harness.machine import cpu_model
from harness.results import RunRecord
from runs import make_run
from test_leaderboard_submit import TOY_PLUGIN, copy_run, edit_json, forge_bundle, plugin_entry, refused, rescore
from test_leaderboard_tables import maintainer_key, verify_by_hand


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
    refused(relabelled, root, TINY_PLUGIN, "relabelled/scores.npz: its ids and labels", "not result.json's dataset.fingerprint")

    halved = copy_run(genuine, tmp_path / "halved")
    half = len(data["ids"]) // 2
    rescore(halved, scores=data["scores"][:half], labels=data["labels"][:half], ids=data["ids"][:half])
    refused(halved, root, TINY_PLUGIN, "halved/scores.npz: its ids and labels", "not result.json's dataset.fingerprint")

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

    rescored = copy_run(genuine, tmp_path / "rescored")
    rescore(rescored, scores=data["scores"] + np.float32(0.25))
    refused(rescored, root, TINY_PLUGIN, "rescored/result.json: seed 0 of this configuration is already stored")

    reseeded = copy_run(genuine, tmp_path / "reseeded")  # the same run claimed as seed 7: its scores give it away
    for name in ("result.json", "run.json"):
        edit_json(reseeded / name, lambda r: r.update(seed=7))
    stored_id = stored_bundles(root)[0].id
    assert refused(reseeded, root, TINY_PLUGIN) == "Error: " + cut(
        f"{reseeded}/scores.npz: its scores, labels and ids are those of stored submission {stored_id} (seed 0); one run "
        "relabelled with another seed or setting is still one run")

    written = sorted(p.relative_to(outside).as_posix() for p in outside.rglob("*") if p.is_file())
    assert written and all(p.startswith(("lb/submissions/", "lb/checked-bundles.json")) for p in written), written
    assert not (tmp_path / "x").exists() and not (tmp_path / "absolute").exists()


@pytest.mark.slow
def test_reproduce_verifies_genuine_scores_and_catches_forged_ones(tiny_runs, tiny_root, tmp_path):
    root = tmp_path / "lb"
    genuine = submit(tiny_runs[0], root, Registry((TINY_PLUGIN,)))
    result = bench("leaderboard", "reproduce", genuine.id, "--leaderboards", root, "--data-root", tiny_root, "--quiet")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("matches (exact) in ") and "nothing written" in result.output
    assert not genuine.verification_path.exists()  # an unsigned verification would only be refused by build
    result = bench("leaderboard", "reproduce", genuine.id, "--leaderboards", root, "--data-root", tiny_root, "--quiet",
                   "--sign", maintainer_key(root))
    assert result.exit_code == 0, result.output
    assert "verified (exact)" in result.output and str(genuine.verification_path) in result.output
    verification = json.loads(genuine.verification_path.read_text())
    assert check_signed(verification, root / "allowed_signers", "test") == "maintainer@test"
    assert verification["outcome"] == "exact" and verification["largest_difference"] == 0.0
    assert verification["content_sha256"] == genuine.content_sha256 and verification["hardware"]["cpu"] == cpu_model()
    assert verification["result_sha256"] == sha256_json(genuine.result)
    assert verification["scores_sha256"] == genuine.scores_sha256
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
    # one configuration is one row, which says how many of its seeds are verified
    (line,) = [line for line in md.splitlines() if "| reproduced " in line]
    assert "| 1 of 2 verified " in line
    rows = {r["seeds"]: r["verification"] for r in csv.DictReader(io.StringIO((tables / "tiny-smoke.csv").read_text()))}
    assert rows == {"0,1": "1 of 2 verified"}
    tex = [line for line in (tables / "tiny-smoke.tex").read_text().splitlines() if " & reproduced & " in line]
    assert [line.split(" & ")[7] for line in tex] == ["1 of 2 verified"]
    html = (tables / "tiny-smoke.html").read_text()
    assert html.count('<span class="badge partly-verified">1 of 2 verified</span>') == 1
    assert 'class="badge verified"' not in html and 'class="badge self-reported"' not in html


@pytest.mark.slow
def test_reproduce_refuses_a_claim_the_training_does_not_give(tiny_runs, tiny_root, tmp_path):
    root = tmp_path / "lb"
    claimed = copy_run(tiny_runs["short"], tmp_path / "claimed")
    edit_json(claimed / "result.json", lambda r: r.update(gpu="NVIDIA H200"))  # a CPU run shown as an H200 one
    stored = submit(claimed, root, Registry((TINY_PLUGIN,)))
    result = bench("leaderboard", "reproduce", stored.id, "--leaderboards", root, "--data-root", tiny_root, "--quiet")
    assert result.exit_code == 1 and result.output == "Error: " + cut(
        f"{stored.path}: the re-trained run does not match the submission: result.gpu is 'NVIDIA H200' in the "
        "submission but None in the re-trained run; the submission claims what training it again does not give") + "\n"
    assert not stored.verification_path.exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "change, difference",
    [
        (lambda r: r["dataset"].update(name="voc2007"), "result.dataset.name is 'voc2007' in the submission but 'tiny'"),
        (lambda r: r["dataset"].update(coverage=0.5), "result.dataset.coverage is 0.5 in the submission but 1.0"),
        (lambda r: r["dataset"].update(n_train=5011), "result.dataset.n_train is 5011 in the submission but 96"),
        (lambda r: r["model"].update(backbone="resnet101"), "result.model.backbone is 'resnet101' in the submission but None"),
        (lambda r: r["model"].update(version="9"), "result.model.version is '9' in the submission but '1'"),
        (lambda r: r["model"]["plugin"].update(sha256="f" * 64),
         f"result.model.plugin.sha256 is {'f' * 64!r} in the submission but {sha256_of(TINY_PLUGIN)!r}"),
        (lambda r: r["pipeline"].update(version="1"), "result.pipeline.version is '1' in the submission but '3'"),
        (lambda r: r.update(gpu="NVIDIA H200"), "result.gpu is 'NVIDIA H200' in the submission but None"),
    ],
)
def test_every_field_but_timings_and_the_machine_must_be_what_training_gives(tiny_runs, change, difference):
    genuine = RunRecord.read(tiny_runs[0])
    claimed = json.loads((tiny_runs[0] / "result.json").read_text())
    change(claimed)
    assert record_difference(RunRecord.from_json(claimed), genuine) == f"{difference} in the re-trained run"
    machine = json.loads((tiny_runs[0] / "result.json").read_text())
    machine.update(created="2031-01-01T00:00:00+00:00", wall_time_s=1.0, train_images_per_s=1.0, harness_version="9.9")
    machine["environment"].update(cpu="another", platform="another", torch_threads=64)
    machine["model"]["plugin"]["path"] = machine["dataset"]["plugin"]["path"] = "/elsewhere/tiny_plugin.py"
    assert record_difference(RunRecord.from_json(machine), genuine) is None


def test_reproduce_bounds_the_recorded_thread_count(tmp_path):
    plugin = tmp_path / "toy_plugin.py"
    plugin.write_text(TOY_PLUGIN)
    root = tmp_path / "lb"
    cores = os.cpu_count()
    for seed, threads, message in (
            (0, 0, "result.environment.torch_threads is 0; the thread count (a whole number, at least 1) is needed to "
                   "repeat a run's sums"),
            (1, cores + 1, f"result.environment.torch_threads is {cores + 1}, more than the {cores} cores here; a CPU run "
                           f"repeats its sums only with its own thread count: reproduce it on a machine with {cores + 1} "
                           "cores or more")):
        run = make_run(tmp_path / "runs", seed=seed, run_files=True)
        edit_json(run / "result.json", lambda r: r["environment"].update(torch_threads=threads))
        stored = submit(run, root, Registry((str(plugin),)))
        result = bench("leaderboard", "reproduce", stored.id, "--leaderboards", root)
        assert result.exit_code == 1 and result.output == "Error: " + cut(f"{stored.path}: {message}") + "\n"


EVIL = """from pathlib import Path
Path(__file__).with_name("imported").write_text("the submitter's code ran")
"""


def test_reproduce_imports_no_plugin_the_bundle_does_not_hold(tmp_path, monkeypatch):
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "evil_mod.py").write_text(EVIL)
    (evil / "evil.py").write_text(EVIL)
    monkeypatch.syspath_prepend(str(evil))  # importable by name, as a module plugin would be
    monkeypatch.chdir(evil)  # and as a path relative to where reproduce runs
    toy = tmp_path / "toy_plugin.py"
    toy.write_text(TOY_PLUGIN)
    root = tmp_path / "lb"
    cases = [
        (plugin_entry("evil_mod", "distribution", distribution="evil-dist"),
         "plugin 'evil_mod' came from evil-dist 1.0, but it is not installed; install that version to reproduce the run"),
        (plugin_entry("evil_mod", "module"),
         "{path} (run): plugins[0] is module 'evil_mod', whose code the bundle does not hold; reproduce runs only code "
         "stored in the bundle or installed plugin distributions: train again with the plugin as a file, a folder or a "
         "distribution"),
    ]
    for seed, (entry, message) in enumerate(cases):
        run = make_run(tmp_path / "runs", seed=seed, run_files=True)
        edit_json(run / "run.json", lambda r: r["plugins"].append(entry))
        stored = submit(run, root, Registry((str(toy),)))
        result = bench("leaderboard", "reproduce", stored.id, "--leaderboards", root)
        assert result.exit_code == 1 and result.output == "Error: " + cut(message.format(path=stored.path)) + "\n"
    forged = forge_bundle(stored.path, lambda b: b["run"]["plugins"].__setitem__(0, plugin_entry(str(evil / "evil.py"),
                                                                                                 "module")))
    message = (f"{forged} (run): plugins[0].value {str(evil / 'evil.py')!r} is not a module or entry-point name (dotted "
               "identifiers), but its source is 'module'; a path is only ever a file or directory plugin, whose code a "
               "submission stores: submit the run folder as the harness wrote it")
    for command in (("reproduce", forged.name[-len("0123456789ab.json"):-len(".json")]), ("build",)):
        result = bench("leaderboard", *command, "--leaderboards", root)
        assert result.exit_code == 2 and result.output == "Error: " + cut(message) + "\n", result.output
    assert not (evil / "imported").exists()


def test_gpu_tolerance_pools_only_verified_seeds_and_is_capped(tmp_path, monkeypatch):
    plugin = tmp_path / "toy_plugin.py"
    plugin.write_text(TOY_PLUGIN)
    registry = Registry((str(plugin),))
    root = tmp_path / "lb"
    groups = {"flip": (0, 1, 2), "crop": (0, 1)}
    for aug, seeds in groups.items():
        for seed in seeds:
            verify_by_hand(submit(make_run(tmp_path / aug, aug=aug, seed=seed, score_seed=10 * (aug == "crop") + seed,
                                           gpu="NVIDIA H200", n_test=3000, run_files=True), root, registry))
    # a self-reported configuration whose second seed is forged to perfect scores: a spread of tens of points
    wide = [make_run(tmp_path / "mixup", aug="mixup", seed=seed, score_seed=90 + seed, gpu="NVIDIA H200", n_test=3000,
                     run_files=True) for seed in (0, 1)]
    with np.load(wide[1] / "scores.npz") as data:
        rescore(wide[1], scores=np.where(data["labels"] == 1, np.float32(10), np.float32(-10)))
    wide = [submit(run, root, registry) for run in wide]
    target = submit(make_run(tmp_path / "target", size=512, score_seed=99, gpu="NVIDIA H200", n_test=3000, run_files=True),
                    root, registry)
    submit(make_run(tmp_path / "other", protocol="smoke", aug="flip", seed=5, gpu="x", run_files=True), root, registry)
    bundles = stored_bundles(root)
    tolerance = gpu_tolerance(target, bundles)
    for key, _ in METRICS:
        values = {aug: [json.loads((tmp_path / aug / f"toy-resnet101-{aug}-448-wang2019-seed{s}" / "result.json")
                                   .read_text())["metrics"][key] for s in seeds] for aug, seeds in groups.items()}
        pooled = (2 * np.var(values["flip"], ddof=1) + np.var(values["crop"], ddof=1)) / 3
        assert 0.5 * math.sqrt(pooled) < TOLERANCE_CAP  # small enough not to be capped
        assert tolerance[key] == pytest.approx(0.5 * math.sqrt(pooled), rel=1e-12)
    for bundle in wide:
        verify_by_hand(bundle)  # verified or not, no spread of seeds widens the tolerance beyond the cap
    assert gpu_tolerance(target, stored_bundles(root))["map"] == TOLERANCE_CAP
    lonely = [b for b in bundles if b.record.protocol.name == "smoke"][0]
    with pytest.raises(UserError, match="there is none yet: verify two seeds of one configuration first"):
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
    with pytest.raises(UserError, match=r"score different test sets: 1 only in the submission \(first 'i4'\)"):
        compare_scores(stored, ids, labels, again[:5], ids[order][:5], ["a", "b", "c"])
