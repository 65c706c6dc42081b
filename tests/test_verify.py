"""``harness.verify.verify`` and ``bench data verify`` on tiny manifest datasets."""

from __future__ import annotations

import dataclasses
import json
import shutil
import struct

import numpy as np
import pytest
from click.testing import CliRunner
from layouts import truncate, write_csv_manifest, write_manifest_images

import harness.verify
from harness.cli import main
from harness.data import fingerprint
from harness.registry import Registry
from harness.specs import Dataset, Split
from harness.verify import check_image, verify
from plugins.datasets.manifest import MANIFEST, load

ROWS = [
    {"image": "a.jpg", "labels": "cat|dog", "split": "train"},
    {"image": "b.jpg", "labels": "?cat", "split": "train"},
    {"image": "c.jpg", "labels": "dog", "split": "test"},
    {"image": "d.jpg", "labels": "cat", "split": "test"},
]


@pytest.fixture
def manifest(tmp_path):
    write_manifest_images(tmp_path, [row["image"] for row in ROWS])
    return write_csv_manifest(tmp_path / "manifest.csv", ROWS)


def _verify(path, spec=MANIFEST, workers=None, **options):
    return verify(load(path, options), spec, progress=False, workers=workers)


def _problems(report):
    return [(p["split"], p["id"], p["problem"]) for p in report["problems"]]


def test_builtin_datasets_are_registered():
    registry = Registry()
    for name in ("shapes", "voc2007", "coco2014", "nuswide", "manifest"):
        component = registry.get("dataset", name)
        assert component.spec.name == name and component.plugin.source == "built-in"


def test_clean_dataset_summary(manifest):
    report = _verify(manifest)
    assert report["problems"] == []
    assert report["dataset"] == "manifest" and report["classes"] == ["cat", "dog"]
    assert report["splits"]["train"] == {
        "n": 2, "listed": 2, "positives": 2, "ignored": 1,
        "per_class_positives": {"cat": 1, "dog": 1}, "per_class_ignored": {"cat": 1, "dog": 0},
    }
    assert report["splits"]["test"]["per_class_positives"] == {"cat": 1, "dog": 1}
    assert report["coverage"] == 1.0
    assert report["fingerprint"] == fingerprint(load(manifest, {}))


def test_truncated_and_undecodable_images_are_named(manifest, tmp_path):
    truncate(tmp_path / "b.jpg")
    (tmp_path / "c.jpg").write_text("not an image")
    problems = _problems(_verify(manifest))
    assert problems[0][:2] == ("train", "b") and problems[0][2].startswith("cannot decode: image file is truncated")
    assert problems[1] == ("test", "c", "cannot decode: not an image format Pillow reads")
    assert len(problems) == 2


def test_missing_image_is_reported_once(manifest, tmp_path):
    (tmp_path / "d.jpg").unlink()
    assert _problems(_verify(manifest)) == [("test", "d", "image file not found")]
    report = _verify(manifest, skip_missing=True)
    assert report["problems"] == [] and report["coverage"] == 0.75
    assert report["splits"]["test"]["n"] == 1 and report["splits"]["test"]["listed"] == 2


def test_shared_ids_and_identical_files_between_splits(tmp_path):
    write_manifest_images(tmp_path, ["a.jpg", "b.jpg"])
    shutil.copy(tmp_path / "a.jpg", tmp_path / "copy.jpg")
    rows = [
        {"image": "a.jpg", "labels": "cat", "split": "train", "id": "x"},
        {"image": "b.jpg", "labels": "cat", "split": "train", "id": "y"},
        {"image": "b.jpg", "labels": "cat", "split": "test", "id": "x"},
        {"image": "copy.jpg", "labels": "cat", "split": "test", "id": "z"},
    ]
    problems = _problems(_verify(write_csv_manifest(tmp_path / "m.csv", rows)))
    assert problems == [
        ("test", "x", "id also in train"),
        ("test", "x", "same file content as train image y"),
        ("test", "z", "same file content as train image x"),
    ]


def test_duplicate_id_within_a_split_and_bad_labels(manifest, tmp_path):
    paths = [tmp_path / "a.jpg", tmp_path / "b.jpg"]
    dataset = Dataset(
        name="hand-made",
        classes=["cat", "dog"],
        splits={
            "train": Split(["a", "a"], paths, np.array([[1, 0], [2, 0]], dtype=np.int8)),
            "test": Split(["c"], [tmp_path / "c.jpg"], np.zeros((1, 3), dtype=np.int8)),
        },
    )
    problems = _problems(verify(dataset, MANIFEST, progress=False))
    assert ("train", "a", "id appears twice in train") in problems
    assert ("train", "a", "labels other than 1, 0 and -1") in problems
    assert ("test", None, "label matrix has shape (1, 3), expected (N, 2)") in problems


def test_split_sizes_compared_with_canonical(manifest):
    spec = dataclasses.replace(MANIFEST, canonical={"train": 2, "test": 3})
    assert _problems(_verify(manifest, spec)) == [("test", None, "2 images listed; the official split has 3")]


def test_complete_data_is_compared_per_class_and_by_fingerprint(manifest):
    dataset = load(manifest, {})
    official = {
        "train": {"positives": {"cat": 1, "dog": 1}, "ignored": {"cat": 1, "dog": 0}},
        "test": {"positives": {"cat": 1, "dog": 2}, "ignored": {"cat": 0, "dog": 0}},
    }
    dataset = dataclasses.replace(dataset, info=dict(dataset.info, canonical_counts=official))
    spec = dataclasses.replace(MANIFEST, canonical={"train": 2, "test": 2}, canonical_fingerprint=fingerprint(dataset))
    assert _problems(verify(dataset, spec, progress=False)) == [
        ("test", None, "class dog: 1 positives; the official split has 2")
    ]
    spec = dataclasses.replace(spec, canonical_fingerprint="0" * 16)
    assert "differs from the official 0000000000000000" in _problems(verify(dataset, spec, progress=False))[-1][2]


def test_check_image(tmp_path):
    assert check_image(tmp_path / "none.jpg") == (None, "image file not found")
    write_manifest_images(tmp_path, ["a.jpg"])
    digest, problem = check_image(tmp_path / "a.jpg")
    assert problem is None and len(digest) == 16


def test_cli_json_and_exit_code(manifest, tmp_path):
    truncate(tmp_path / "a.jpg")
    result = CliRunner().invoke(main, ["data", "verify", "--dataset", "manifest", "--data-root", str(manifest), "--json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["problems"][0]["id"] == "a" and report["problems"][0]["file"] == str(tmp_path / "a.jpg")
    assert report["fingerprint"] == fingerprint(load(manifest, {}))


def test_cli_summary_lists_problems_by_id_and_skip_missing(tmp_path):
    names = [f"{i:02d}.jpg" for i in range(30)]
    write_manifest_images(tmp_path, names[:2])
    rows = [{"image": n, "labels": "cat", "split": "train" if i % 2 else "test"} for i, n in enumerate(names)]
    path = write_csv_manifest(tmp_path / "m.csv", rows)
    runner = CliRunner()
    result = runner.invoke(main, ["data", "verify", "--dataset", "manifest", "--data-root", str(path)])
    assert result.exit_code == 1
    assert "28 problem(s):" in result.output and "train 03: image file not found" in result.output
    assert "... and 8 more; --json lists them all" in result.output
    result = runner.invoke(main, ["data", "verify", "--dataset", "manifest", "--data-root", str(path), "--skip-missing"])
    assert result.exit_code == 0 and "coverage     6.67%" in result.output


def test_cli_unknown_dataset_is_one_line():
    result = CliRunner().invoke(main, ["data", "verify", "--dataset", "voc2008"])
    assert result.exit_code == 1 and "unknown dataset 'voc2008'; did you mean voc2007" in result.output


def test_many_threads_give_the_same_report_as_one(tmp_path):
    """Several chunks of images on two threads, with every kind of decoding problem planted."""
    names = [f"{i:03d}.jpg" for i in range(300)]
    write_manifest_images(tmp_path, names)
    truncate(tmp_path / "007.jpg")
    (tmp_path / "100.jpg").write_text("not an image")
    (tmp_path / "200.jpg").unlink()
    shutil.copy(tmp_path / "001.jpg", tmp_path / "250.jpg")
    rows = [{"image": n, "labels": "cat" if i % 3 else "dog|fox", "split": "train" if i < 150 else "test"}
            for i, n in enumerate(names)]
    dataset = load(write_csv_manifest(tmp_path / "m.csv", rows), {})
    one = verify(dataset, MANIFEST, progress=False, workers=1)
    two = verify(dataset, MANIFEST, progress=False, workers=2)
    assert one == two
    assert [(p["id"], p["problem"][:30]) for p in two["problems"]] == [
        ("200", "image file not found"),
        ("007", "cannot decode: image file is t"),
        ("100", "cannot decode: not an image fo"),
        ("250", "same file content as train ima"),
    ]


def test_any_failure_of_the_image_parser_is_a_problem_naming_it(manifest, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise struct.error("unpack requires a buffer of 4 bytes")

    monkeypatch.setattr(harness.verify.Image, "open", broken)
    assert check_image(tmp_path / "a.jpg")[1] == "cannot decode: error: unpack requires a buffer of 4 bytes"


def test_loader_warnings_are_reported_beside_the_problems(manifest, tmp_path):
    dataset = load(manifest, {})
    warning = {"split": "test", "id": "c", "file": str(tmp_path / "c.jpg"), "problem": "worth knowing"}
    report = verify(dataclasses.replace(dataset, info=dict(dataset.info, warnings=[warning])), MANIFEST, progress=False)
    assert report["problems"] == [] and report["warnings"] == [warning]
    assert _verify(manifest)["warnings"] == []


def test_cli_workers_option(manifest):
    result = CliRunner().invoke(main, ["data", "verify", "--dataset", "manifest", "--data-root", str(manifest),
                                       "--workers", "0"])
    assert result.exit_code == 2 and "--workers" in result.output
    result = CliRunner().invoke(main, ["data", "verify", "--dataset", "manifest", "--data-root", str(manifest),
                                       "--workers", "1"])
    assert result.exit_code == 0, result.output
