"""The manifest dataset: a user's own images and labels from a CSV or JSON file."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from layouts import write_csv_manifest, write_manifest_images

from harness.cli import main
from harness.data import fingerprint
from harness.errors import UserError
from harness.registry import Registry
from harness.runner import load_dataset
from plugins.datasets.manifest import load

ROWS = [
    {"image": "img/a.jpg", "labels": "dog|cat", "split": "train"},
    {"image": "img/b.jpg", "labels": "cat; ?bird", "split": "train"},
    {"image": "img/c.jpg", "labels": "", "split": "train"},
    {"image": "img/d.jpg", "labels": "bird", "split": "test"},
    {"image": "img/e.jpg", "labels": "dog", "split": "test"},
]
FILES = [row["image"] for row in ROWS]


@pytest.fixture
def csv_manifest(tmp_path):
    write_manifest_images(tmp_path, FILES)
    return write_csv_manifest(tmp_path / "manifest.csv", ROWS)


def test_csv_labels_ignored_names_and_sorted_classes(csv_manifest, tmp_path):
    dataset = load(csv_manifest, {})
    assert list(dataset.classes) == ["bird", "cat", "dog"]
    assert list(dataset.splits["train"].ids) == ["img/a", "img/b", "img/c"]
    assert dataset.splits["train"].labels.tolist() == [[0, 1, 1], [-1, 1, 0], [0, 0, 0]]
    assert dataset.splits["test"].labels.tolist() == [[1, 0, 0], [0, 0, 1]]
    assert dataset.splits["test"].image_paths[0] == tmp_path / "img" / "d.jpg"
    assert dataset.problems == [] and dataset.coverage == 1.0


def test_ignored_column_and_id_column(tmp_path):
    write_manifest_images(tmp_path, FILES[:2])
    rows = [
        {"image": "img/a.jpg", "labels": "dog", "split": "train", "ignored": "cat|bird", "id": "first"},
        {"image": "img/b.jpg", "labels": "cat", "split": "test", "ignored": "", "id": ""},
    ]
    dataset = load(write_csv_manifest(tmp_path / "m.csv", rows), {})
    assert list(dataset.splits["train"].ids) == ["first"] and list(dataset.splits["test"].ids) == ["img/b"]
    assert dataset.splits["train"].labels.tolist() == [[-1, -1, 1]]


def test_json_with_class_list_keeps_its_order(tmp_path):
    write_manifest_images(tmp_path, FILES[:2])
    document = {
        "classes": ["dog", "cat", "bird", "fish"],
        "images": [
            {"image": "img/a.jpg", "labels": ["dog", "?cat"], "split": "train"},
            {"image": "img/b.jpg", "labels": "bird", "ignored": ["dog"], "split": "test"},
        ],
    }
    (tmp_path / "m.json").write_text(json.dumps(document))
    dataset = load(tmp_path / "m.json", {})
    assert list(dataset.classes) == ["dog", "cat", "bird", "fish"]
    np.testing.assert_array_equal(dataset.splits["train"].labels, [[1, -1, 0, 0]])
    np.testing.assert_array_equal(dataset.splits["test"].labels, [[-1, 0, 1, 0]])


def test_json_list_equals_csv(csv_manifest, tmp_path):
    (tmp_path / "m.json").write_text(json.dumps(ROWS))
    assert fingerprint(load(tmp_path / "m.json", {})) == fingerprint(load(csv_manifest, {}))


def test_folder_with_manifest_csv(csv_manifest, tmp_path):
    assert fingerprint(load(tmp_path, {})) == fingerprint(load(csv_manifest, {}))


def test_fingerprint_follows_labels_ids_and_order(csv_manifest, tmp_path):
    base = fingerprint(load(csv_manifest, {}))
    assert fingerprint(load(csv_manifest, {})) == base
    variants = [
        [dict(ROWS[0], labels="dog")] + ROWS[1:],
        [ROWS[1], ROWS[0]] + ROWS[2:],
        [dict(ROWS[0], image="img/e.jpg")] + ROWS[1:],
    ]
    prints = {fingerprint(load(write_csv_manifest(tmp_path / f"v{i}.csv", rows), {})) for i, rows in enumerate(variants)}
    assert len(prints | {base}) == 4


def test_missing_image(csv_manifest, tmp_path):
    (tmp_path / "img" / "c.jpg").unlink()
    (problem,) = load(csv_manifest, {}).problems
    assert problem == {"split": "train", "id": "img/c", "file": str(tmp_path / "img" / "c.jpg"), "problem": "image file not found"}
    skipped = load(csv_manifest, {"skip_missing": True})
    assert len(skipped.splits["train"]) == 2 and skipped.coverage == pytest.approx(4 / 5)


@pytest.mark.parametrize(
    "rows, message",
    [
        ([{"image": "a.jpg", "label": "x", "split": "train"}], "missing column 'labels'"),
        ([{"image": "a.jpg", "labels": "x", "split": "train", "ignore": ""}], "unknown column 'ignore'"),
        ([{"image": "a.jpg", "labels": "x", "split": "val"}], r"line 2: split 'val' must be 'train' or 'test'"),
        ([{"image": "a.jpg", "labels": "x|?x", "split": "train"}], "line 2: class 'x' is both present and ignored"),
        ([{"image": "", "labels": "x", "split": "train"}], "line 2: empty image path"),
        ([{"image": "a.jpg", "labels": "x|?", "split": "train"}], "line 2: '\\?' names no class"),
        ([{"image": "a.jpg", "labels": "x", "split": "train"}], "has no 'test' images"),
        ([{"image": "b.jpg", "labels": "x", "split": "train"}] + [{"image": "a.jpg", "labels": "x", "split": "test"}] * 2,
         "line 4: id 'a' appears twice in the test split"),
    ],
)
def test_bad_csv_is_one_line_naming_file_and_line(tmp_path, rows, message):
    path = write_csv_manifest(tmp_path / "m.csv", rows)
    with pytest.raises(UserError, match=message) as error:
        load(path, {})
    assert "m.csv" in str(error.value) and "\n" not in str(error.value)


def test_short_csv_row(tmp_path):
    (tmp_path / "m.csv").write_text("image,labels,split\na.jpg,x\n")
    with pytest.raises(UserError, match="line 2: expected 3 fields"):
        load(tmp_path / "m.csv", {})


@pytest.mark.parametrize(
    "document, message",
    [
        ("[{", "is not valid JSON"),
        ({"classes": ["a"], "images": [{"image": "x.jpg", "labels": "b", "split": "train"}]},
         "image #0: class 'b' is not in the manifest's \"classes\" list"),
        ({"classes": ["a", "a"], "images": []}, "lists a name twice"),
        ({"pictures": []}, "expected"),
        ([{"image": "x.jpg", "labels": 3, "split": "train"}], "image #0: labels must be a string"),
        ([{"image": "x.jpg", "split": "train"}], "image #0: missing key 'labels'"),
        ([{"image": "x.jpg", "labels": "", "split": "train", "id": 7}], "id must be a string"),
    ],
)
def test_bad_json(tmp_path, document, message):
    (tmp_path / "m.json").write_text(document if isinstance(document, str) else json.dumps(document))
    with pytest.raises(UserError, match=message):
        load(tmp_path / "m.json", {})


def test_bad_data_root(tmp_path):
    with pytest.raises(UserError, match="needs --data-root"):
        load(None, {})
    with pytest.raises(UserError, match="not found"):
        load(tmp_path / "nope.csv", {})
    with pytest.raises(UserError, match="holds no manifest.csv or manifest.json"):
        load(tmp_path, {})
    (tmp_path / "m.txt").write_text("x")
    with pytest.raises(UserError, match=r"must end in \.csv or \.json"):
        load(tmp_path / "m.txt", {})


def test_bench_data_verify_on_a_clean_manifest(csv_manifest):
    result = CliRunner().invoke(main, ["data", "verify", "--dataset", "manifest", "--data-root", str(csv_manifest)])
    assert result.exit_code == 0, result.output
    assert "OK: every image decodes" in result.output
    assert fingerprint(load(csv_manifest, {})) in result.output


def test_csv_saved_with_a_byte_order_mark(tmp_path):
    """As a spreadsheet program saves "CSV UTF-8": the file starts with EF BB BF."""
    write_manifest_images(tmp_path, FILES)
    path = tmp_path / "excel.csv"
    with path.open("w", newline="", encoding="utf-8-sig") as handle:
        handle.write("image,labels,split\r\n" + "".join(f"{r['image']},{r['labels']},{r['split']}\r\n" for r in ROWS))
    assert path.read_bytes()[:4] == b"\xef\xbb\xbfi"
    dataset = load(path, {})
    assert dataset.splits["train"].labels.tolist() == [[0, 1, 1], [-1, 1, 0], [0, 0, 0]]
    assert fingerprint(dataset) == fingerprint(load(write_csv_manifest(tmp_path / "plain.csv", ROWS), {}))


def test_images_outside_the_manifest_folder_are_warnings_not_problems(tmp_path):
    folder = tmp_path / "bench"
    write_manifest_images(tmp_path, ["outside.jpg", "far/away.jpg"])
    write_manifest_images(folder, ["img/a.jpg", "img/b.jpg"])
    rows = [
        {"image": "img/a.jpg", "labels": "cat|bird", "split": "train"},
        {"image": "../outside.jpg", "labels": "dog", "split": "train"},
        {"image": "img/../img/b.jpg", "labels": "dog", "split": "test"},
        {"image": str(tmp_path / "far" / "away.jpg"), "labels": "cat|dog", "split": "test"},
    ]
    path = write_csv_manifest(folder / "manifest.csv", rows)
    dataset = load(path, {})
    where = f"outside the manifest's folder {folder}"
    assert dataset.problems == []
    assert dataset.info["warnings"] == [
        {"split": "train", "id": "../outside", "file": str(folder / ".." / "outside.jpg"), "problem": where},
        {"split": "test", "id": str(tmp_path / "far" / "away"), "file": str(tmp_path / "far" / "away.jpg"), "problem": where},
    ]
    assert load_dataset(Registry().get("dataset", "manifest"), str(path), False).info["warnings"] == dataset.info["warnings"]
    result = CliRunner().invoke(main, ["data", "verify", "--dataset", "manifest", "--data-root", str(path)])
    assert result.exit_code == 0, result.output
    assert "OK: every image decodes and no problem was found." in result.output
    assert "2 warning(s), which do not stop a run:" in result.output
    assert f"  train ../outside: {where} ({folder / '..' / 'outside.jpg'})" in result.output


@pytest.mark.parametrize("content, message", [
    ("image,labels,split\na\0.jpg,x,train\n", r"m\.csv line 2: the image path contains a NUL character"),
    ('[{"image": "a\\u0000.jpg", "labels": "x", "split": "train"}]', r"image #0: the image path contains a NUL"),
    ("image,labels,split\n" + "a" * 200_000 + ",x,train\n", r"m\.csv line 2: field larger than field limit"),
])
def test_nul_or_a_huge_field_is_one_line(tmp_path, content, message):
    path = tmp_path / ("m.json" if content.startswith("[") else "m.csv")
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        load(path, {})
