"""The voc2007 loader on a real 40-image sample of the devkit labels, in the devkit layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from layouts import Untouchable, reads_are_seen, truncate, voc_annotation, voc_sample, write_voc

from harness.cli import main
from harness.data import compose, fingerprint, split_hash
from harness.errors import UserError
from plugins.datasets.voc2007 import (
    CANONICAL,
    CANONICAL_FINGERPRINT,
    CANONICAL_IGNORED,
    CANONICAL_POSITIVES,
    CLASSES,
    VOC2007,
    load,
)
from harness.datasets import quoted

FIXTURES = Path(__file__).parent / "fixtures"
DEVKIT_TO_LABEL = {1: 1, -1: 0, 0: -1}


@pytest.fixture
def voc(tmp_path):
    return write_voc(tmp_path)


def expected_fingerprint(layout) -> str:
    """The fingerprint composed from the layout's own ids and labels, independently of the loader."""
    hashes = {split: split_hash(layout["ids"][split], layout["labels"][split]) for split in ("train", "test")}
    return compose(layout["classes"], hashes["train"], hashes["test"])


def real_voc_labels() -> dict[str, tuple[list[str], np.ndarray]]:
    """The complete official VOC2007 labels (tests/fixtures/voc2007_labels.npz, made from the
    devkit's per-class files), in this project's encoding, per harness split."""
    with np.load(FIXTURES / "voc2007_labels.npz") as data:
        return {
            split: ([f"{i:06d}" for i in data[f"{devkit}_ids"]],
                    np.vectorize(DEVKIT_TO_LABEL.get)(data[f"{devkit}_devkit"]).astype(np.int8))
            for split, devkit in (("train", "trainval"), ("test", "test"))
        }


def test_canonical_fingerprint_and_counts_are_those_of_the_real_labels():
    real = real_voc_labels()
    hashes = {split: split_hash(ids, labels) for split, (ids, labels) in real.items()}
    assert compose(CLASSES, hashes["train"], hashes["test"]) == CANONICAL_FINGERPRINT == VOC2007.canonical_fingerprint
    for split, (ids, labels) in real.items():
        assert len(ids) == CANONICAL[split]
        assert tuple((labels == 1).sum(axis=0)) == CANONICAL_POSITIVES[split]
        assert tuple((labels == -1).sum(axis=0)) == CANONICAL_IGNORED[split]


def test_labels_ids_and_class_order_follow_the_devkit(voc, tmp_path):
    dataset = load(tmp_path, {})
    assert list(dataset.classes) == list(CLASSES) == voc["classes"]
    for split in ("train", "test"):
        assert list(dataset.splits[split].ids) == voc["ids"][split]
        np.testing.assert_array_equal(dataset.splits[split].labels, voc["labels"][split])
        assert dataset.splits[split].labels.dtype == np.int8
        assert dataset.splits[split].image_paths[0] == voc["base"] / "JPEGImages" / f"{voc['ids'][split][0]}.jpg"
    assert dataset.problems == [] and dataset.coverage == 1.0
    assert dataset.info["listed"] == {"train": 20, "test": 20}


def test_difficult_only_classes_are_ignored_and_difficult_extras_are_not(voc, tmp_path):
    dataset = load(tmp_path, {})
    _, ids, devkit = voc_sample()
    labels = dataset.splits["test"].labels
    assert (labels == -1).sum() == (devkit["test"] == 0).sum() > 0
    assert ((labels == -1) == (devkit["test"] == 0)).all()
    # write_voc adds a difficult object to a present class of every third image
    assert labels[0][devkit["test"][0] == 1].tolist() == [1] * int((devkit["test"][0] == 1).sum())


@pytest.mark.parametrize("where", ["", "VOCdevkit", "VOCdevkit/VOC2007"])
def test_data_root_may_be_the_parent_vocdevkit_or_voc2007(voc, tmp_path, where):
    assert fingerprint(load(tmp_path / where, {})) == expected_fingerprint(voc)


def test_sample_fingerprint_is_composed_from_its_ids_and_labels(voc, tmp_path):
    assert fingerprint(load(tmp_path, {})) == fingerprint(load(tmp_path, {})) == expected_fingerprint(voc)


def test_changed_label_id_or_order_changes_the_fingerprint(voc, tmp_path):
    main_dir = voc["base"] / "ImageSets" / "Main"
    annotation = voc["base"] / "Annotations" / f"{voc['ids']['test'][1]}.xml"
    text = annotation.read_text()
    annotation.write_text(text.replace("<difficult>0</difficult>", "<difficult>1</difficult>", 1))
    changed_label = fingerprint(load(tmp_path, {}))
    annotation.write_text(text)
    test_list = main_dir / "test.txt"
    ids = test_list.read_text().split()
    test_list.write_text("\n".join([ids[1], ids[0]] + ids[2:]))
    changed_order = fingerprint(load(tmp_path, {}))
    test_list.write_text("\n".join(ids[:-1]))
    changed_ids = fingerprint(load(tmp_path, {}))
    assert len({expected_fingerprint(voc), changed_label, changed_order, changed_ids}) == 4


def test_canonical_facts():
    assert VOC2007.canonical == CANONICAL == {"train": 5011, "test": 4952}
    assert sum(CANONICAL_POSITIVES["test"]) == 7013 and sum(CANONICAL_IGNORED["test"]) == 619
    assert sum(CANONICAL_POSITIVES["train"]) == 7306 and sum(CANONICAL_IGNORED["train"]) == 607
    assert all(len(counts) == len(CLASSES) for counts in (*CANONICAL_POSITIVES.values(), *CANONICAL_IGNORED.values()))


def test_missing_image_is_a_problem_or_skipped(voc, tmp_path):
    gone = voc["ids"]["test"][3]
    (voc["base"] / "JPEGImages" / f"{gone}.jpg").unlink()
    dataset = load(tmp_path, {})
    assert [(p["split"], p["id"], p["problem"]) for p in dataset.problems] == [("test", gone, "image file not found")]
    assert gone in dataset.splits["test"].ids
    skipped = load(tmp_path, {"skip_missing": True})
    assert skipped.problems == [] and gone not in skipped.splits["test"].ids
    assert skipped.coverage == pytest.approx(39 / 40)
    assert skipped.info["missing"] == {"train": 0, "test": 1}
    assert fingerprint(skipped) != expected_fingerprint(voc)


def test_per_class_files_disagreeing_with_the_xml_are_problems(voc, tmp_path):
    image_id = voc["ids"]["train"][0]
    cat_file = voc["base"] / "ImageSets" / "Main" / "cat_trainval.txt"
    lines = cat_file.read_text().splitlines()
    assert lines[0].split() == [image_id, "-1"]
    cat_file.write_text("\n".join([f"{image_id}  1"] + lines[1:]) + "\n")
    (problem,) = load(tmp_path, {}).problems
    assert problem["id"] == image_id and problem["split"] == "train"
    assert problem["problem"] == "cat: annotation XML says absent, cat_trainval.txt says present"


def test_without_per_class_files_nothing_is_cross_checked(tmp_path):
    write_voc(tmp_path, per_class_files=False)
    assert load(tmp_path, {}).problems == []


def test_missing_image_sets_names_the_path(voc, tmp_path):
    (voc["base"] / "ImageSets" / "Main" / "test.txt").unlink()
    with pytest.raises(UserError, match=r"ImageSets/Main/test\.txt not found; extract VOCtest_06-Nov-2007\.tar"):
        load(tmp_path, {})


def test_no_layout_or_no_root(tmp_path):
    with pytest.raises(UserError, match=r"VOCdevkit/VOC2007/ImageSets not found"):
        load(tmp_path, {})
    with pytest.raises(UserError, match="needs --data-root"):
        load(None, {})


@pytest.mark.parametrize(
    "xml, message",
    [
        ("<annotation><object><name>dog</name></annotation>", r"not well-formed XML \(line 1"),
        ("<annotation><object><name>doggo</name><difficult>0</difficult></object></annotation>",
         "object 1 has unknown class 'doggo'"),
        ("<annotation><object><name>dog</name><difficult>2</difficult></object></annotation>",
         "object 1 has <difficult>2</difficult>; expected 0 or 1"),
    ],
)
def test_bad_annotation_is_one_line_naming_the_image(voc, tmp_path, xml, message):
    image_id = voc["ids"]["test"][2]
    (voc["base"] / "Annotations" / f"{image_id}.xml").write_text(xml)
    with pytest.raises(UserError, match=rf"{image_id}\.xml: {message}") as error:
        load(tmp_path, {})
    assert "\n" not in str(error.value)


def test_bench_data_verify_names_a_bad_annotation(voc, tmp_path):
    bad = voc["ids"]["train"][4]
    (voc["base"] / "Annotations" / f"{bad}.xml").write_text("<annotation><object>")
    result = CliRunner().invoke(main, ["data", "verify", "--dataset", "voc2007", "--data-root", str(tmp_path)])
    assert result.exit_code == 1 and f"{bad}.xml: not well-formed XML" in result.output


def test_bench_data_verify_names_a_truncated_image(voc, tmp_path):
    bad = voc["ids"]["test"][5]
    truncate(voc["base"] / "JPEGImages" / f"{bad}.jpg")
    result = CliRunner().invoke(main, ["data", "verify", "--dataset", "voc2007", "--data-root", str(tmp_path)])
    assert result.exit_code == 1
    assert f"test {bad}: cannot decode" in result.output


def test_bench_data_verify_reports_voc_against_the_official_sizes(voc, tmp_path):
    result = CliRunner().invoke(main, ["data", "verify", "--dataset", "voc2007", "--data-root", str(tmp_path / "VOCdevkit")])
    assert result.exit_code == 1
    assert "20 images listed; the official split has 5,011" in result.output
    assert expected_fingerprint(voc) in result.output and "aeroplane" in result.output


def test_ids_that_are_no_plain_file_names_are_refused_and_never_read(tmp_path):
    if not reads_are_seen(tmp_path):
        pytest.skip("this file system does not update access times")
    root = tmp_path / "data"
    layout = write_voc(root)
    xml = voc_annotation(layout["classes"], np.ones(20, dtype=int), False)
    planted = [Untouchable(tmp_path / "secret.jpg"), Untouchable(tmp_path / "secret.xml", xml),
               Untouchable(tmp_path / "abs.jpg"), Untouchable(tmp_path / "abs.xml", xml)]
    test_list = layout["base"] / "ImageSets" / "Main" / "test.txt"
    bad = ["../../../../secret", str(tmp_path / "abs"), "..\\..\\x"]
    test_list.write_text(f"{bad[0]}\n" + test_list.read_text() + f"{bad[1]}\n{bad[2]}\n")
    dataset = load(root, {})
    assert dataset.problems == [
        {"split": "test", "id": image_id, "file": str(test_list),
         "problem": f"id {quoted(image_id)} is no plain file name (it holds '/', '\\' or '..'); "
                    "refused, not read (use the official test.txt)"}
        for image_id in bad
    ]
    assert list(dataset.splits["test"].ids) == layout["ids"]["test"] and dataset.info["listed"]["test"] == 23
    result = CliRunner().invoke(main, ["data", "verify", "--dataset", "voc2007", "--data-root", str(root)])
    assert result.exit_code == 1 and "test ../../../../secret: id '../../../../secret' is no plain file name" in result.output
    assert not any(file.was_read() for file in planted)
