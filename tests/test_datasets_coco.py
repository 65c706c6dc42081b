"""The coco2014 loader on tiny instances files in the official layout."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from layouts import COCO_CATEGORIES, Untouchable, reads_are_seen, write_coco

from harness.cli import main
from harness.data import fingerprint
from harness.errors import UserError
from plugins.datasets.coco2014 import COCO2014, load
from harness.datasets import quoted


@pytest.fixture
def coco(tmp_path):
    return write_coco(tmp_path)


def _edit(path, change):
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


def test_classes_in_category_id_order_and_images_without_instances_dropped(coco, tmp_path):
    dataset = load(tmp_path, {})
    assert list(dataset.classes) == [name for _, name in COCO_CATEGORIES]
    for split in ("train", "test"):
        assert list(dataset.splits[split].ids) == coco["ids"][split]
        np.testing.assert_array_equal(dataset.splits[split].labels, coco["labels"][split])
    assert dataset.splits["train"].image_paths[0] == tmp_path / "train2014" / "COCO_train2014_000000000009.jpg"
    assert dataset.info["dropped_without_instances"] == {"train": 2, "test": 1}
    assert dataset.problems == [] and dataset.coverage == 1.0


def test_crowd_regions_count_as_present(coco, tmp_path):
    test = load(tmp_path, {}).splits["test"]
    assert test.labels[list(test.ids).index("1000")].tolist() == [0, 0, 1, 0, 0]


def test_canonical_sizes():
    assert COCO2014.canonical == {"train": 82081, "test": 40137}


@pytest.mark.parametrize("where", ["", "annotations"])
def test_data_root_may_be_the_folder_or_its_annotations(coco, tmp_path, where):
    assert fingerprint(load(tmp_path / where, {})) == fingerprint(load(tmp_path, {}))


def test_data_root_may_hold_a_coco2014_folder(tmp_path):
    write_coco(tmp_path / "coco2014")
    assert len(load(tmp_path, {}).splits["train"]) == 3


def test_missing_image_is_a_problem_or_skipped(coco, tmp_path):
    (tmp_path / "val2014" / "COCO_val2014_000000000042.jpg").unlink()
    (problem,) = load(tmp_path, {}).problems
    assert (problem["split"], problem["id"], problem["problem"]) == ("test", "42", "image file not found")
    skipped = load(tmp_path, {"skip_missing": True})
    assert list(skipped.splits["test"].ids) == ["1000"] and skipped.coverage == pytest.approx(4 / 5)


def test_malformed_json_names_the_file(coco, tmp_path):
    path = tmp_path / "annotations" / "instances_val2014.json"
    path.write_text(path.read_text()[:-10])
    with pytest.raises(UserError, match=r"instances_val2014\.json is not valid JSON"):
        load(tmp_path, {})
    result = CliRunner().invoke(main, ["data", "verify", "--dataset", "coco2014", "--data-root", str(tmp_path)])
    assert result.exit_code == 1 and "instances_val2014.json is not valid JSON" in result.output


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.pop("categories"), r"not a COCO instances file \(missing key 'categories'\)"),
        (lambda d: d["annotations"].append({"image_id": 9, "category_id": 4}), "unknown category id 4"),
        (lambda d: d["annotations"].append({"image_id": 5, "category_id": 1}), "image id 5, which is not in"),
        (lambda d: d["categories"][0].update(name="brush"), "list different categories"),
    ],
)
def test_bad_instances_file_is_one_line(coco, tmp_path, change, message):
    _edit(tmp_path / "annotations" / "instances_train2014.json", change)
    with pytest.raises(UserError, match=message):
        load(tmp_path, {})


def test_missing_instances_file_or_layout(coco, tmp_path):
    (tmp_path / "annotations" / "instances_val2014.json").unlink()
    with pytest.raises(UserError, match=r"instances_val2014\.json not found"):
        load(tmp_path, {})
    shutil.rmtree(tmp_path / "annotations")
    with pytest.raises(UserError, match=r"annotations/instances_train2014\.json not found"):
        load(tmp_path, {})
    with pytest.raises(UserError, match="needs --data-root"):
        load(None, {})


def _plant_outside(root, tmp_path):
    """Two train images with instances whose file_names lead out of train2014/: one relative
    through ``..``, one absolute, both at real JPEGs outside the data root."""
    relative, absolute = Untouchable(tmp_path / "secret.jpg"), Untouchable(tmp_path / "elsewhere" / "other.jpg")

    def plant(document):
        document["images"] += [{"id": 500, "file_name": "../../secret.jpg"}, {"id": 501, "file_name": str(absolute.path)}]
        document["annotations"] += [{"id": 90, "image_id": 500, "category_id": 1}, {"id": 91, "image_id": 501, "category_id": 2}]

    _edit(root / "annotations" / "instances_train2014.json", plant)
    return relative, absolute


def test_file_names_leading_outside_the_image_folder_are_refused_and_never_read(tmp_path):
    if not reads_are_seen(tmp_path):
        pytest.skip("this file system does not update access times")
    root = tmp_path / "data"
    write_coco(root)
    relative, absolute = _plant_outside(root, tmp_path)
    source = str(root / "annotations" / "instances_train2014.json")
    expected = [
        {"split": "train", "id": "500", "file": source, "problem": "file_name '../../secret.jpg' leads outside "
         "train2014/; refused, not read (use the official instances_train2014.json)"},
        {"split": "train", "id": "501", "file": source, "problem": f"file_name {quoted(str(absolute.path))} leads outside "
         "train2014/; refused, not read (use the official instances_train2014.json)"},
    ]
    for options in ({}, {"skip_missing": True}):
        dataset = load(root, options)
        assert dataset.problems == expected
        assert dataset.splits["train"].ids == ["9", "77", "309"] and dataset.info["listed"]["train"] == 5
        assert dataset.coverage == pytest.approx(5 / 7)
    runner = CliRunner()
    verified = runner.invoke(main, ["data", "verify", "--dataset", "coco2014", "--data-root", str(root), "--json"])
    assert verified.exit_code == 1 and json.loads(verified.stdout)["problems"][:2] == expected
    shown = runner.invoke(main, ["data", "verify", "--dataset", "coco2014", "--data-root", str(root)])
    assert f"train 500: {expected[0]['problem']} ({source})" in shown.output
    ran = runner.invoke(main, ["run", "--dataset", "coco2014", "--data-root", str(root), "--skip-missing",
                               "--out", str(tmp_path / "runs"), "--device", "cpu"])
    assert ran.exit_code == 1 and "dataset 'coco2014' has 2 problem(s), first: 500 (file_name '../../secret.jpg'" in ran.output
    assert not relative.was_read() and not absolute.was_read()
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
