"""The embedded ``shapes`` dataset is deterministic; a run records the fingerprint ``verify`` prints."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from click.testing import CliRunner
from layouts import write_voc

import plugins.datasets.shapes as shapes
from harness.cli import main
from harness.data import compose, fingerprint, split_hash


def test_rendering_is_a_pure_function_of_split_and_index():
    first, classes = shapes.render("train", 17)
    again, classes_again = shapes.render("train", 17)
    assert np.array_equal(np.asarray(first), np.asarray(again)) and classes == classes_again
    other, _ = shapes.render("test", 17)
    assert not np.array_equal(np.asarray(first), np.asarray(other))


def label_matrix(split: str) -> np.ndarray:
    """The N×C label matrix of ``split`` from the generator's scene draws, without drawing a pixel."""
    labels = np.zeros((shapes.SPLIT_SIZES[split], len(shapes.CLASSES)), dtype=np.int8)
    for index in range(shapes.SPLIT_SIZES[split]):
        labels[index, shapes.image_classes(split, index)] = 1
    return labels


def test_generation_is_identical_in_two_folders_and_multi_label(tmp_path, monkeypatch):
    monkeypatch.setattr(shapes, "SPLIT_SIZES", {"train": 60, "test": 20})
    a = shapes.load(tmp_path / "a", {})
    b = shapes.load(tmp_path / "b", {})
    shapes.generate(tmp_path / "c", workers=1)
    assert fingerprint(a) == fingerprint(b) == fingerprint(shapes.load(tmp_path / "c", {}))
    for name in ("train/train00007.png", "test/test00003.png"):
        digests = {hashlib.sha256((tmp_path / d / name).read_bytes()).hexdigest() for d in "abc"}
        assert len(digests) == 1
    labels = a.splits["train"].labels
    assert np.array_equal(labels, label_matrix("train")) and np.array_equal(a.splits["test"].labels, label_matrix("test"))
    assert labels.shape == (60, len(shapes.CLASSES)) and set(np.unique(labels)) <= {0, 1}
    per_image = labels.sum(1)
    assert per_image.min() >= 1 and per_image.max() <= 4 and (per_image > 1).mean() > 0.4


def test_the_declared_canonical_fingerprint_is_that_of_the_generators_labels():
    """Computed from the scenes' labels without drawing: a change to the generator that changes
    any label makes the declared fingerprint wrong (and must bump shapes.VERSION)."""
    labels = {split: label_matrix(split) for split in ("train", "test")}
    ids = {split: [f"{split}{i:05d}" for i in range(n)] for split, n in shapes.SPLIT_SIZES.items()}
    hashes = {split: split_hash(ids[split], labels[split]) for split in labels}
    assert {split: len(matrix) for split, matrix in labels.items()} == {"train": 4000, "test": 1000}
    assert compose(shapes.CLASSES, hashes["train"], hashes["test"]) == shapes.SHAPES.canonical_fingerprint
    train = labels["train"]
    together = (train[:, shapes.CLASSES.index("ring")] & train[:, shapes.CLASSES.index("circle")]).mean()
    apart = (train[:, shapes.CLASSES.index("ring")] & train[:, shapes.CLASSES.index("hexagon")]).mean()
    assert together > 2 * apart  # the designed co-occurrence


@pytest.mark.slow
def test_a_voc_run_records_the_fingerprint_verify_prints(tmp_path):
    write_voc(tmp_path)
    verified = CliRunner().invoke(main, ["data", "verify", "--dataset", "voc2007", "--data-root", str(tmp_path), "--json"])
    report = json.loads(verified.output)
    run = CliRunner().invoke(main, [
        "run", "--dataset", "voc2007", "--data-root", str(tmp_path / "VOCdevkit"), "--model", "smallcnn",
        "--protocol", "smoke", "--size", "32", "--epochs", "1", "--device", "cpu", "--pretrained", "none",
        "--out", str(tmp_path / "runs"), "--quiet"])
    assert run.exit_code == 0, run.output
    record = json.loads(next((tmp_path / "runs").glob("*/result.json")).read_text())
    assert record["dataset"]["fingerprint"] == report["fingerprint"]
    assert record["dataset"]["n_test"] == report["splits"]["test"]["n"]
    with np.load(next((tmp_path / "runs").glob("*/scores.npz"))) as scores:
        assert (scores["labels"] == -1).sum() == report["splits"]["test"]["ignored"]


@pytest.mark.slow
def test_run_refuses_missing_images_unless_told_and_records_coverage(tmp_path):
    layout = write_voc(tmp_path)
    missing = layout["ids"]["test"][0]
    (layout["base"] / "JPEGImages" / f"{missing}.jpg").unlink()
    args = ["run", "--dataset", "voc2007", "--data-root", str(tmp_path), "--model", "smallcnn", "--protocol", "smoke",
            "--size", "32", "--epochs", "1", "--device", "cpu", "--out", str(tmp_path / "runs"), "--quiet"]
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 1
    assert missing in refused.output and "bench data verify" in refused.output and "--skip-missing" in refused.output
    ran = CliRunner().invoke(main, [*args, "--skip-missing"])
    assert ran.exit_code == 0, ran.output
    record = json.loads(next((tmp_path / "runs").glob("*/result.json")).read_text())
    total = len(layout["ids"]["train"]) + len(layout["ids"]["test"])
    assert record["dataset"]["coverage"] == pytest.approx((total - 1) / total)
    assert record["dataset"]["n_test"] == len(layout["ids"]["test"]) - 1
