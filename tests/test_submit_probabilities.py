"""``bench leaderboard submit --scores probabilities``: a real run of a model ending in a
sigmoid is stored as logits with the metrics of those, the conversion is bound to the
bundle's content hash, ``build`` checks it, and ``reproduce`` converts the re-trained scores
alike; bundles stored before the field keep their ids."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import TESTS, TINY_PLUGIN

from harness.cli import main
from harness.errors import UserError
from harness.fusion import fuse_runs
from harness.leaderboard import submit
from harness.leaderboard.bundle import ID_LENGTH, content_sha256, read_bundle
from harness.leaderboard.store import stored_bundles
from harness.leaderboard.submission_check import check_stored
from harness.metrics import PROBABILITY_CLIP, evaluate
from harness.registry import Registry
from runs import make_run

SIGMOID_PLUGIN = str(TESTS / "sigmoid_plugin.py")
PLUGINS = ("--plugin", TINY_PLUGIN, "--plugin", SIGMOID_PLUGIN)
REPOSITORY_LEADERBOARDS = TESTS.parent / "leaderboards"


def bench(*args):
    return CliRunner().invoke(main, [*map(str, args)])


def logits_by_hand(probabilities: np.ndarray) -> np.ndarray:
    """log(p) − log(1 − p) of p clipped as ``from_probabilities`` clips it, as float32."""
    p = np.clip(probabilities.astype(np.float64), PROBABILITY_CLIP, 1 - PROBABILITY_CLIP)
    return (np.log(p) - np.log1p(-p)).astype(np.float32)


def precision_at(predicted: np.ndarray, labels: np.ndarray) -> float:
    """cp_thr by hand: per class, hits over predicted among the images not ignored (0 for 0/0), averaged."""
    predicted = predicted & (labels != -1)
    hits = (predicted & (labels == 1)).sum(axis=0)
    count = predicted.sum(axis=0)
    return float(np.mean(np.where(count > 0, hits / np.maximum(count, 1), 0.0)))


@pytest.fixture(scope="module")
def sigmoid_run(tiny_root, tmp_path_factory) -> Path:
    """One epoch of ``tiny-sigmoid`` on ``tiny``, trained for real on the CPU: its scores are probabilities."""
    out = tmp_path_factory.mktemp("runs")
    result = bench("run", *PLUGINS, "--dataset", "tiny", "--data-root", tiny_root, "--model", "tiny-sigmoid",
                   "--protocol", "smoke", "--size", "32", "--epochs", "1", "--seed", "0", "--device", "cpu",
                   "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    return out / "tiny-tiny-sigmoid-flip-32-smoke-seed0"


@pytest.fixture(scope="module")
def converted(sigmoid_run, tmp_path_factory) -> tuple[Path, Path]:
    """The run submitted with --scores probabilities: (leaderboards root, bundle file)."""
    root = tmp_path_factory.mktemp("converted") / "lb"
    result = bench("leaderboard", "submit", sigmoid_run, "--leaderboards", root, *PLUGINS, "--scores", "probabilities")
    assert result.exit_code == 0, result.output
    assert "Warning" not in result.stderr and "scores converted from probabilities" in result.stdout
    (path,) = (root / "submissions" / "tiny" / "smoke").glob("*--????????????.json")
    return root, path


def run_arrays(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(run_dir / "scores.npz") as data:
        return data["scores"], data["labels"]


@pytest.mark.slow
def test_without_the_option_probabilities_are_warned_about_and_stored_as_they_are(sigmoid_run, tmp_path):
    probabilities, _ = run_arrays(sigmoid_run)
    assert probabilities.min() >= 0 and probabilities.max() <= 1
    result = bench("leaderboard", "submit", sigmoid_run, "--leaderboards", tmp_path / "lb", *PLUGINS)
    assert result.exit_code == 0, result.output
    (warning,) = result.stderr.splitlines()
    assert warning.startswith(f"Warning: {sigmoid_run / 'scores.npz'}: every score lies in [0, 1]")
    assert "pass --scores probabilities to convert them" in warning
    (path,) = (tmp_path / "lb" / "submissions" / "tiny" / "smoke").glob("*--????????????.json")
    bundle = read_bundle(path)
    assert bundle.scores_converted is None and f"accepted as {bundle.id} (non-canonical data):" in result.stdout
    assert bundle.scores()[0].tobytes() == probabilities.tobytes()
    assert bundle.result == json.loads((sigmoid_run / "result.json").read_text())


@pytest.mark.slow
def test_converted_scores_are_the_logits_and_the_metrics_those_of_the_logits(sigmoid_run, converted):
    probabilities, labels = run_arrays(sigmoid_run)
    bundle = read_bundle(converted[1])
    assert bundle.scores_converted == "probabilities"
    logits = logits_by_hand(probabilities)
    stored, stored_labels, _ = bundle.scores()
    assert stored.dtype == np.float32 and stored.tobytes() == logits.tobytes()
    assert np.array_equal(stored_labels, labels)
    metrics = bundle.result["metrics"]
    assert metrics == json.loads(json.dumps(evaluate(logits, labels)))
    # the threshold metrics now cut at p ≥ 0.5, where the probabilities read as logits cut at p ≥ 0
    as_submitted = json.loads((sigmoid_run / "result.json").read_text())["metrics"]
    assert metrics["cp_thr"] == pytest.approx(precision_at(probabilities >= 0.5, labels), abs=1e-12)
    assert as_submitted["cp_thr"] == pytest.approx(precision_at(probabilities >= 0, labels), abs=1e-12)
    assert metrics["cp_thr"] != as_submitted["cp_thr"]
    for key in ("map", "emap", "of1_top3", "cf1_top3"):  # the ranking is kept
        assert metrics[key] == pytest.approx(as_submitted[key], abs=1e-9), key
    # the conversion is part of the content hash: the same bundle without it has another one
    assert bundle.content() == bundle.content_sha256
    unconverted = content_sha256(result=bundle.result, run=bundle.run, log=[e.to_dict() for e in bundle.log],
                                 scores_sha256=bundle.scores_sha256,
                                 submitted_scores_sha256=bundle.submitted_scores_sha256,
                                 canonical_fingerprint=bundle.canonical_fingerprint)
    assert unconverted != bundle.content_sha256


@pytest.mark.slow
def test_build_checks_a_converted_bundle_and_refuses_an_edited_conversion(converted, tmp_path):
    root = tmp_path / "lb"
    shutil.copytree(converted[0], root)
    path = root / converted[1].relative_to(converted[0])
    assert bench("leaderboard", "build", "--leaderboards", root).exit_code == 0
    result = bench("leaderboard", "build", "--leaderboards", root, "--check")
    assert result.exit_code == 0 and "leaderboard files are up to date" in result.output, result.output
    original = path.read_text()
    for value, message in ((None, "its content no longer hashes to content_sha256"),
                           ("logits", "scores_converted 'logits'; expected null or 'probabilities'")):
        data = json.loads(original)
        data["scores_converted"] = value
        path.write_text(json.dumps(data, indent=2))
        result = bench("leaderboard", "build", "--leaderboards", root)
        assert result.exit_code != 0 and result.output.count("\n") == 1, result.output
        assert result.output.startswith(f"Error: {path}: ") and message in result.output, result.output


@pytest.mark.slow
def test_reproduce_converts_the_re_trained_scores_as_the_submission_s_were(converted, tiny_root, tmp_path):
    root, path = converted
    bundle = read_bundle(path)
    result = bench("leaderboard", "reproduce", bundle.id, "--leaderboards", root, "--data-root", tiny_root, "--json")
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.stdout)
    assert outcome["matches"] and outcome["comparison"]["largest_difference"] == 0.0
    assert outcome["verification"]["outcome"] == "exact"

    # a forger who drops the conversion and hashes the bundle again passes build, but not reproduce
    forged_root = tmp_path / "lb"
    shutil.copytree(root, forged_root)
    stored = forged_root / path.relative_to(root)
    data = json.loads(stored.read_text())
    data["scores_converted"] = None
    data["content_sha256"] = content_sha256(
        result=data["result"], run=data["run"], log=data["log"], scores_sha256=data["scores_sha256"],
        submitted_scores_sha256=data["submitted_scores_sha256"], canonical_fingerprint=data["canonical_fingerprint"])
    data["id"] = data["content_sha256"][:ID_LENGTH]
    forged = stored.with_name(f"{data['result']['run_id']}--{data['id']}.json")
    stored.with_name(f"{stored.stem}.scores.npz").rename(forged.with_name(f"{forged.stem}.scores.npz"))
    stored.unlink()
    forged.write_text(json.dumps(data, indent=2))
    assert bench("leaderboard", "build", "--leaderboards", forged_root).exit_code == 0
    result = bench("leaderboard", "reproduce", data["id"], "--leaderboards", forged_root, "--data-root", tiny_root,
                   "--json")
    assert result.exit_code == 1 and not json.loads(result.stdout)["matches"]


def test_bundles_stored_before_the_field_keep_their_ids_and_still_check():
    bundles = stored_bundles(REPOSITORY_LEADERBOARDS)
    assert bundles
    for bundle in bundles:
        assert "scores_converted" not in json.loads(bundle.path.read_text())
        assert bundle.scores_converted is None and bundle.content() == bundle.content_sha256
        check_stored(bundle, {b.id: b for b in bundles}, REPOSITORY_LEADERBOARDS, Registry())


def test_logits_and_fusions_are_not_converted(tmp_path):
    run = make_run(tmp_path / "runs", run_files=True)
    result = bench("leaderboard", "submit", run, "--leaderboards", tmp_path / "lb", "--scores", "probabilities")
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert f"{run / 'scores.npz'} (scores): " in result.output and "outside [0, 1]" in result.output
    assert "drop --scores probabilities for logits" in result.output

    members = [make_run(tmp_path / "members", aug="mixup", size=s, score_seed=s, run_files=True) for s in (384, 448)]
    fused = fuse_runs(members, tmp_path / "fused", Registry().get("fusion", "mean"), "ScaleEn").path
    result = bench("leaderboard", "submit", fused, "--leaderboards", tmp_path / "lb", "--scores", "probabilities")
    assert result.exit_code != 0 and result.output.count("\n") == 1, result.output
    assert result.output.startswith(f"Error: {fused / 'result.json'}: --scores probabilities converts a trained run's")
    assert not list((tmp_path / "lb").rglob("*--*.json"))


def test_the_python_api_takes_only_the_cli_s_score_kinds(tmp_path):
    run = make_run(tmp_path / "runs", run_files=True)
    with pytest.raises(UserError, match=r"^score_kind 'probability': expected one of logits, probabilities$"):
        submit(run, tmp_path / "lb", Registry(), score_kind="probability")
    assert not (tmp_path / "lb").exists()
