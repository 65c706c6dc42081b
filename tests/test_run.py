"""``bench run`` end to end on the tiny dataset: the run folder, refusals, repeatability, resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import TINY_PLUGIN

from harness import metrics
from harness.cli import main
from harness.data import fingerprint
from harness.naming import sha256_of

pytestmark = pytest.mark.slow


def tiny_args(root, out, *extra):
    return ["run", "--plugin", TINY_PLUGIN, "--dataset", "tiny", "--data-root", str(root), "--model", "tiny-cnn",
            "--protocol", "smoke", "--size", "32", "--epochs", "3", "--device", "cpu", "--out", str(out), "--quiet",
            *extra]


def invoke(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


@pytest.fixture(scope="module")
def finished_run(tiny_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    result = invoke(tiny_args(tiny_root, out))
    assert result.exit_code == 0, result.output
    return out / "tiny-tiny-cnn-flip-32-smoke-seed0", result.output


def test_run_folder_holds_result_scores_and_provenance(finished_run, tiny_root):
    from tiny_plugin import load_tiny

    run_dir, output = finished_run
    assert "map (mAP)" in output and "run folder:" in output
    assert sorted(p.name for p in run_dir.iterdir()) == ["log.json", "model.pt", "result.json", "run.json", "scores.npz",
                                                           "train_split.npz"]
    record = json.loads((run_dir / "result.json").read_text())
    with np.load(run_dir / "scores.npz") as data:
        scores, labels, ids = data["scores"], data["labels"], data["ids"]
    dataset = load_tiny(tiny_root, {})
    assert scores.dtype == np.float32 and scores.shape == (48, 10)
    assert labels.dtype == np.int8 and (labels == dataset.splits["test"].labels).all()
    assert list(ids) == list(dataset.splits["test"].ids)
    assert record["metrics"] == json.loads(json.dumps(metrics.evaluate(scores, labels)))
    assert record["dataset"]["fingerprint"] == fingerprint(dataset)
    assert record["dataset"]["n_train"] == 96 and record["dataset"]["n_test"] == 48
    plugin = record["model"]["plugin"]
    assert plugin["source"] == "file" and plugin["sha256"] == sha256_of(TINY_PLUGIN)
    assert record["augmentation"]["name"] == "flip" and record["augmentation"]["plugin"]["source"] == "built-in"
    assert record["protocol"]["name"] == "smoke"
    assert record["protocol"]["deviations"] == {"epochs": {"protocol": 20, "used": 3}}
    assert record["model"]["pretrained"] == {"mode": "none", "files": []}
    assert record["precision"] == "fp32" and record["device"] == "cpu" and record["world_size"] == 1
    assert record["environment"]["versions"]["torch"]
    assert [entry["epoch"] for entry in json.loads((run_dir / "log.json").read_text())] == [0, 1, 2]


def test_finished_run_is_never_overwritten_without_being_told(finished_run, tiny_root):
    run_dir, _ = finished_run
    before = (run_dir / "result.json").read_bytes()
    result = CliRunner().invoke(main, tiny_args(tiny_root, run_dir.parent))
    assert result.exit_code == 1
    assert "holds a finished run; pass --overwrite" in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert (run_dir / "result.json").read_bytes() == before


def test_two_identical_runs_agree_exactly_and_overwrite_replaces(finished_run, tiny_root):
    run_dir, _ = finished_run
    first = np.load(run_dir / "scores.npz")["scores"]
    result = invoke(tiny_args(tiny_root, run_dir.parent, "--overwrite"))
    assert result.exit_code == 0, result.output
    assert np.array_equal(np.load(run_dir / "scores.npz")["scores"], first)


def test_resume_after_kill_matches_an_uninterrupted_run(finished_run, tiny_root, tmp_path):
    reference = np.load(finished_run[0] / "scores.npz")["scores"]
    environment = dict(os.environ, TINY_KILL_AT_EPOCH="2")
    command = [sys.executable, "-m", "harness", *tiny_args(tiny_root, tmp_path, "--aug", "recording-flip")]
    killed = subprocess.run(command, env=environment, capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    run_dir = tmp_path / "tiny-tiny-cnn-recording-flip-32-smoke-seed0"
    assert (run_dir / "checkpoint.pt").is_file() and not (run_dir / "result.json").exists()
    assert [e["epoch"] for e in json.loads((run_dir / "log.json").read_text())] == [0, 1]
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    first_segment_s, first_epochs = checkpoint["wall_time_s"], checkpoint["log"]
    refused = CliRunner().invoke(main, tiny_args(tiny_root, tmp_path, "--aug", "recording-flip"))
    assert refused.exit_code == 1 and "holds an unfinished run; continue it with `bench run --resume" in refused.output
    with_settings = CliRunner().invoke(main, ["run", "--resume", str(run_dir), "--plugin", TINY_PLUGIN, "--epochs", "9"])
    assert with_settings.exit_code == 1
    assert "stored settings; drop --epochs" in with_settings.output and "--plugin" not in with_settings.output
    resumed = invoke(["run", "--resume", str(run_dir), "--plugin", TINY_PLUGIN, "--quiet"])  # named again, re-hashed
    assert resumed.exit_code == 0, resumed.output
    assert np.array_equal(np.load(run_dir / "scores.npz")["scores"], reference)
    record = json.loads((run_dir / "result.json").read_text())
    assert record["wall_time_s"] > first_segment_s > sum(entry["seconds"] for entry in first_epochs)


def test_ignored_labels_are_trained_as_positives(tiny_root, tmp_path, monkeypatch):
    from tiny_plugin import load_tiny

    record = tmp_path / "targets.npy"
    monkeypatch.setenv("TINY_RECORD_TARGETS", str(record))
    result = invoke(tiny_args(tiny_root, tmp_path, "--aug", "recording-flip", "--epochs", "1"))
    assert result.exit_code == 0, result.output
    seen = []
    with open(record, "rb") as stream:
        while stream.tell() < os.fstat(stream.fileno()).st_size:
            seen.append(np.load(stream))
    seen = np.concatenate(seen)
    labels = load_tiny(tiny_root, {}).splits["train"].labels
    assert (labels == -1).sum() > 0
    assert sorted(map(tuple, seen)) == sorted(map(tuple, (labels != 0).astype(np.float32)))


def test_unknown_model_suggests_close_names(tiny_root, tmp_path):
    result = CliRunner().invoke(main, tiny_args(tiny_root, tmp_path, "--model", "tiny-cn"))
    assert result.exit_code == 1
    assert "unknown model 'tiny-cn'; did you mean tiny-cnn" in result.output
    assert "Traceback" not in result.output


def test_json_prints_the_record_and_nothing_else(tiny_root, tmp_path):
    result = CliRunner().invoke(main, tiny_args(tiny_root, tmp_path, "--epochs", "1", "--json"))
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed == json.loads((tmp_path / "tiny-tiny-cnn-flip-32-smoke-seed0" / "result.json").read_text())
    assert result.stderr == ""
