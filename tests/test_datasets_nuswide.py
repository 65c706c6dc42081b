"""The nuswide loader on a tiny copy of the official release layout."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from layouts import NUSWIDE_CONCEPTS, Untouchable, reads_are_seen, write_nuswide

from harness.cli import main
from harness.data import fingerprint
from harness.errors import UserError
from harness.datasets import quoted
import plugins.datasets.nuswide as nuswide
from plugins.datasets.nuswide import NUSWIDE, below_flickr, image_entry, load


@pytest.fixture
def nus(tmp_path):
    return write_nuswide(tmp_path)


def test_labels_ids_and_files_from_backslash_lists(nus, tmp_path):
    dataset = load(tmp_path, {})
    assert list(dataset.classes) == NUSWIDE_CONCEPTS
    for split in ("train", "test"):
        assert list(dataset.splits[split].ids) == nus["ids"][split]
        assert list(dataset.splits[split].image_paths) == nus["files"][split]
        np.testing.assert_array_equal(dataset.splits[split].labels, nus["labels"][split])
    assert dataset.problems == [] and dataset.coverage == 1.0


def test_images_without_any_label_are_kept(nus, tmp_path):
    dataset = load(tmp_path, {})
    row = list(dataset.splits["train"].ids).index("beach/0010_313472315")
    assert dataset.splits["train"].labels[row].tolist() == [0, 0, 0, 0]
    assert dataset.info["without_labels"] == {"train": 1, "test": 0}


@pytest.mark.parametrize(
    "line, entry",
    [
        ("actor\\0001_2124494179.jpg", "actor/0001_2124494179.jpg"),
        ("C:\\ImageData\\Flickr\\actor\\0001_2124494179.jpg\r", "actor/0001_2124494179.jpg"),
        ("actor/0001_2124494179.jpg", "actor/0001_2124494179.jpg"),
    ],
)
def test_image_entry(line, entry):
    assert image_entry(line) == entry


def test_concepts_list_folder_and_release_folder_are_found(tmp_path):
    write_nuswide(tmp_path / "NUS-WIDE", concepts_in_folder=True)
    assert list(load(tmp_path, {}).classes) == NUSWIDE_CONCEPTS


def test_coverage_is_recorded_and_changes_the_fingerprint(nus, tmp_path):
    complete = fingerprint(load(tmp_path, {}))
    nus["files"]["train"][1].unlink()
    with_problem = load(tmp_path, {})
    assert [p["id"] for p in with_problem.problems] == ["beach/0003_515093458"]
    assert fingerprint(with_problem) == complete
    skipped = load(tmp_path, {"skip_missing": True})
    assert skipped.coverage == pytest.approx(5 / 6) and skipped.problems == []
    assert skipped.info["listed"] == {"train": 4, "test": 2} and skipped.info["missing"] == {"train": 1, "test": 0}
    assert fingerprint(skipped) != complete


def test_canonical_sizes():
    assert NUSWIDE.canonical == {"train": 161789, "test": 107859}


def test_image_list_disagreeing_with_imagelist_txt_is_a_problem(nus, tmp_path):
    all_list = tmp_path / "ImageList" / "Imagelist.txt"
    lines = all_list.read_text().splitlines()
    all_list.write_text("\n".join(lines[1:] + ["C:\\ImageData\\Flickr\\extra\\0002_1.jpg"]) + "\n")
    problems = {(p["split"], p["id"], p["problem"]) for p in load(tmp_path, {}).problems}
    assert problems == {
        ("train", "actor/0001_2124494179", "not in Imagelist.txt"),
        (None, "extra/0002_1", "in Imagelist.txt but in neither TrainImagelist.txt nor TestImagelist.txt"),
    }


@pytest.mark.parametrize("content", ["0\n1\n0\n", "0\n1\n2\n0\n", "0\n1\nx\n0\n"])
def test_bad_label_file_names_the_file(nus, tmp_path, content):
    (tmp_path / "Groundtruth" / "TrainTestLabels" / "Labels_water_Train.txt").write_text(content)
    with pytest.raises(UserError, match=r"Labels_water_Train\.txt must hold 4 lines of 0 or 1"):
        load(tmp_path, {})


def test_missing_files_name_the_path(nus, tmp_path):
    (tmp_path / "Groundtruth" / "TrainTestLabels" / "Labels_sky_Test.txt").unlink()
    with pytest.raises(UserError, match=r"Labels_sky_Test\.txt not found"):
        load(tmp_path, {})
    (tmp_path / "ImageList" / "TestImagelist.txt").unlink()
    with pytest.raises(UserError, match=r"TestImagelist\.txt not found"):
        load(tmp_path, {})
    (tmp_path / "Concepts81.txt").unlink()
    with pytest.raises(UserError, match=r"Concepts81\.txt not found"):
        load(tmp_path, {})
    shutil.rmtree(tmp_path / "ImageList")
    with pytest.raises(UserError, match=r"ImageList/TrainImagelist\.txt not found"):
        load(tmp_path, {})


def test_entries_leading_outside_flickr_are_refused_and_never_read(tmp_path):
    if not reads_are_seen(tmp_path):
        pytest.skip("this file system does not update access times")
    root = tmp_path / "data"
    layout = write_nuswide(root)
    planted = [Untouchable(tmp_path / "secret.jpg"), Untouchable(tmp_path / "abs.jpg")]
    bad = ["..\\..\\secret.jpg", str(tmp_path / "abs.jpg"), "C:\\ImageData\\Flickr\\..\\..\\secret.jpg"]
    train_list = root / "ImageList" / "TrainImagelist.txt"
    train_list.write_text(train_list.read_text() + "\r\n".join(bad) + "\r\n")
    for concept in NUSWIDE_CONCEPTS:
        labels = root / "Groundtruth" / "TrainTestLabels" / f"Labels_{concept}_Train.txt"
        labels.write_text(labels.read_text() + "1\n" * len(bad))
    (root / "ImageList" / "Imagelist.txt").unlink()
    dataset = load(root, {"skip_missing": True})
    ids = ["../../secret", str(tmp_path / "abs.jpg")[1:-4], "../../secret"]
    assert dataset.problems == [
        {"split": "train", "id": image_id, "file": str(train_list),
         "problem": f"entry {quoted(line)} leads outside Flickr/; refused, not read (use the official TrainImagelist.txt)"}
        for image_id, line in zip(ids, bad)
    ]
    assert list(dataset.splits["train"].ids) == layout["ids"]["train"] and dataset.info["listed"]["train"] == 7
    np.testing.assert_array_equal(dataset.splits["train"].labels, layout["labels"]["train"])
    result = CliRunner().invoke(main, ["data", "verify", "--dataset", "nuswide", "--data-root", str(root)])
    assert result.exit_code == 1 and "5 problem(s):" in result.output
    assert "train ../../secret: entry '..\\\\..\\\\secret.jpg' leads outside Flickr/" in result.output
    assert not any(file.was_read() for file in planted)


@pytest.mark.parametrize(
    "line, below",
    [
        ("actor\\0001_2.jpg", "actor/0001_2.jpg"),
        ("C:\\ImageData\\Flickr\\actor\\0001_2.jpg", "actor/0001_2.jpg"),
        ("D:\\Flickr\\x\\Flickr\\..\\y.jpg", "../y.jpg"),
        ("/etc/passwd", "/etc/passwd"),
    ],
)
def test_below_flickr(line, below):
    assert below_flickr(line) == below


def test_a_concept_that_is_no_plain_name_is_refused(nus, tmp_path):
    (tmp_path / "Concepts81.txt").write_text("animal\n../../etc/sky\nwater\nperson\n")
    with pytest.raises(UserError, match=r"Concepts81\.txt: concept '\.\./\.\./etc/sky' is no plain name"):
        load(tmp_path, {})


def test_parsed_once_and_again_after_a_label_file_changes(nus, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    reads = []
    original = nuswide.read_list
    monkeypatch.setattr(nuswide, "read_list", lambda path: reads.append(path.name) or original(path))
    first = load(tmp_path, {})
    assert reads == ["TrainImagelist.txt", "TestImagelist.txt", "Imagelist.txt"]
    again = load(tmp_path, {})
    assert len(reads) == 3 and fingerprint(again) == fingerprint(first) and again.problems == first.problems
    assert list(again.splits["train"].image_paths) == nus["files"]["train"]
    labels = tmp_path / "Groundtruth" / "TrainTestLabels" / "Labels_person_Train.txt"
    labels.write_text("1\n0\n0\n0\n")  # the first train image shows a person now
    changed = load(tmp_path, {})
    assert len(reads) == 6 and changed.splits["train"].labels[:, 3].tolist() == [1, 0, 0, 0]
    assert len(list((tmp_path / "cache" / "annotations").glob("nuswide-*.npz"))) == 1


def test_a_list_that_is_not_utf8_is_one_line(nus, tmp_path):
    (tmp_path / "ImageList" / "TestImagelist.txt").write_bytes(b"actor\\\xff.jpg\r\n")
    with pytest.raises(UserError, match=r"TestImagelist\.txt is not UTF-8 text \(invalid start byte at byte 6\)"):
        load(tmp_path, {})
