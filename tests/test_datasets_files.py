"""``plugins.datasets.files``: which names stay in their folder, lazy file lists, finding files by listing."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from layouts import write_jpeg

from harness.datasets import Files, existing, leaves_folder, quoted, take


@pytest.mark.parametrize(
    "name, leaves",
    [
        ("COCO_train2014_000000000009.jpg", False),
        ("actor/0001_2124494179.jpg", False),
        ("sub/../x.jpg", True),
        ("../../etc/passwd", True),
        ("..\\..\\secret.jpg", True),
        ("a/..", True),
        ("/etc/passwd", True),
        ("\\\\server\\share\\x.jpg", True),
        ("C:\\Windows\\x.jpg", True),
        ("c:x.jpg", True),
        ("x\0.jpg", True),
        ("a..b.jpg", False),
        ("...jpg", False),
        ("1:2.jpg", False),
        ("", False),
    ],
)
def test_leaves_folder(name, leaves):
    assert leaves_folder(name) is leaves


def test_quoted_cuts_long_names():
    assert quoted("a.jpg") == "'a.jpg'"
    assert quoted("x" * 100, limit=10) == "'" + "x" * 9 + "…'"
    assert quoted("a\nb") == "'a\\nb'"


def test_files_are_paths_made_on_demand(tmp_path):
    files = Files(tmp_path, ["a.jpg", "sub/b.jpg", "c.jpg"])
    assert len(files) == 3 and files[1] == tmp_path / "sub" / "b.jpg" and files[-1] == tmp_path / "c.jpg"
    assert list(files) == [tmp_path / "a.jpg", tmp_path / "sub" / "b.jpg", tmp_path / "c.jpg"]
    assert list(files[:2]) == list(files)[:2] and isinstance(files[1:], Files)
    assert list(take(files, [2, 0])) == [tmp_path / "c.jpg", tmp_path / "a.jpg"]
    assert take([Path("x"), Path("y")], [1]) == [Path("y")]
    assert tmp_path / "c.jpg" in files and files.index(tmp_path / "c.jpg") == 2


def test_existing_agrees_with_isfile(tmp_path):
    write_jpeg(tmp_path / "img" / "a.jpg", "a")
    (tmp_path / "img" / "folder.jpg").mkdir()
    os.symlink(tmp_path / "img" / "a.jpg", tmp_path / "img" / "link.jpg")
    os.symlink(tmp_path / "nowhere.jpg", tmp_path / "img" / "broken.jpg")
    write_jpeg(tmp_path / "top.jpg", "top")
    names = ["a.jpg", "folder.jpg", "link.jpg", "broken.jpg", "missing.jpg", "../top.jpg", "none/x.jpg", "a.jpg/x"]
    expected = [os.path.isfile(tmp_path / "img" / name) for name in names]
    assert expected == [True, False, True, False, False, True, False, False]
    assert existing(Files(tmp_path / "img", names)).tolist() == expected
    assert existing([tmp_path / "img" / name for name in names]).tolist() == expected
    assert existing([]).dtype == np.bool_ and len(existing(Files(tmp_path, []))) == 0


def test_existing_relative_to_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_jpeg(tmp_path / "here.jpg", "here")
    assert existing([Path("here.jpg"), Path("gone.jpg"), Path(tmp_path / "here.jpg")]).tolist() == [True, False, True]
