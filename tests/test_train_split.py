"""``bench run`` keeps its train split's ids and labels in the run folder (``train_split.npz``),
and ``bench leaderboard submit`` (a real process) proves them against ``dataset.train_hash``
and refuses a run whose train ids include a test id."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY_PLUGIN
from harness.data import compose, split_hash
from test_run_safety import RUN_ID, bench, one_error_line, run_args


@pytest.fixture(scope="module")
def tiny_run(tiny_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    result = bench(*run_args(tiny_root, out, epochs=1))
    assert result.returncode == 0, result.stderr
    return out / RUN_ID


def submit(run_dir: Path, root: Path):
    return bench("leaderboard", "submit", run_dir, "--leaderboards", root, "--plugin", TINY_PLUGIN)


def forge(run_dir: Path, target: Path, change) -> Path:
    """A copy of ``run_dir`` whose train split ``change(ids, labels)`` rewrote, with result.json's
    train_hash and fingerprint and run.json's fingerprint made to match it, as a run trained on
    that split would record."""
    shutil.copytree(run_dir, target)
    with np.load(target / "train_split.npz") as data:
        ids, labels = data["ids"].copy(), data["labels"].copy()
    ids, labels = change(ids, labels)
    np.savez_compressed(target / "train_split.npz", ids=ids, labels=labels)
    record = json.loads((target / "result.json").read_text())
    with np.load(target / "scores.npz") as scores:
        test_hash = split_hash(scores["ids"].tolist(), scores["labels"])
    record["dataset"]["train_hash"] = split_hash(ids.tolist(), labels)
    record["dataset"]["fingerprint"] = compose(record["dataset"]["classes"], record["dataset"]["train_hash"], test_hash)
    (target / "result.json").write_text(json.dumps(record, indent=2))
    run = json.loads((target / "run.json").read_text())
    run["fingerprint"] = record["dataset"]["fingerprint"]
    (target / "run.json").write_text(json.dumps(run, indent=2))
    return target


def test_the_run_folder_holds_the_train_split_the_record_hashes(tiny_run, tiny_root):
    from tiny_plugin import load_tiny

    train = load_tiny(tiny_root, {}).splits["train"]
    with np.load(tiny_run / "train_split.npz", allow_pickle=False) as data:
        assert data["ids"].tolist() == [str(i) for i in train.ids]
        assert data["labels"].dtype == np.int8 and np.array_equal(data["labels"], train.labels)
        found = split_hash(data["ids"].tolist(), data["labels"])
    assert found == json.loads((tiny_run / "result.json").read_text())["dataset"]["train_hash"]


def test_a_train_id_that_is_a_test_id_is_refused(tiny_run, tmp_path):
    with np.load(tiny_run / "scores.npz") as scores:
        first_test = str(scores["ids"][0])

    def leak(ids, labels):
        ids[5] = first_test
        return ids, labels

    leaky = forge(tiny_run, tmp_path / "leaky", leak)
    result = submit(leaky, tmp_path / "lb")
    assert result.returncode == 1
    assert one_error_line(result) == (
        f"Error: {leaky / 'train_split.npz'}: 1 train image id(s) are also test ids of the scores, first "
        f"{first_test!r}; a test image seen in training inflates its scores: train again on disjoint splits")
    assert not (tmp_path / "lb" / "submissions").exists() or not list((tmp_path / "lb" / "submissions").rglob("*.json"))


def test_a_train_split_file_that_is_not_the_recorded_split_is_refused(tiny_run, tmp_path):
    shutil.copytree(tiny_run, tmp_path / "relabelled")
    with np.load(tiny_run / "train_split.npz") as data:
        ids, labels = data["ids"], data["labels"].copy()
    labels[0, 0] = 1 - labels[0, 0]
    np.savez_compressed(tmp_path / "relabelled" / "train_split.npz", ids=ids, labels=labels)
    result = submit(tmp_path / "relabelled", tmp_path / "lb")
    recorded = json.loads((tiny_run / "result.json").read_text())["dataset"]["train_hash"]
    assert one_error_line(result) == (
        f"Error: {tmp_path / 'relabelled' / 'train_split.npz'}: its ids and labels hash to "
        f"{split_hash(ids.tolist(), labels)[:12]}…, not result.json's "
        f"dataset.train_hash {recorded[:12]}…; submit the run folder as `bench run` wrote it")


def test_a_train_split_file_holding_python_objects_is_refused_unloaded(tiny_run, tmp_path):
    shutil.copytree(tiny_run, tmp_path / "pickled")
    np.savez(tmp_path / "pickled" / "train_split.npz", ids=np.array([object()], dtype=object), labels=np.zeros((1, 3)))
    line = one_error_line(submit(tmp_path / "pickled", tmp_path / "lb"))
    assert line.startswith(f"Error: {tmp_path / 'pickled' / 'train_split.npz'}: holds Python objects, which are never "
                           "loaded")


def test_a_run_folder_without_the_file_is_accepted_with_a_warning(tiny_run, tmp_path):
    shutil.copytree(tiny_run, tmp_path / "older")
    (tmp_path / "older" / "train_split.npz").unlink()
    result = submit(tmp_path / "older", tmp_path / "lb")
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == (
        f"Warning: {tmp_path / 'older'}: no train_split.npz, so whether its train and test splits share an image "
        "could not be checked; runs of this harness write it: train again to have it checked")
    assert result.stdout.startswith("accepted as ")
    genuine = submit(tiny_run, tmp_path / "lb2")
    assert genuine.returncode == 0 and genuine.stderr == "", genuine.stderr
