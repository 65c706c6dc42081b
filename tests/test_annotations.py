"""The annotation cache: COCO's instances files parsed once per content, also by concurrent processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from layouts import write_coco

import harness.annotations as annotations
import harness.cache
import plugins.datasets.coco2014 as coco2014
from harness.data import fingerprint

TESTS = Path(__file__).resolve().parent


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A cache folder of this test's own."""
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "annotations"


@pytest.fixture
def parses(monkeypatch):
    """The instances files parsed so far (their names), as ``read_instances`` sees them."""
    seen = []
    original = coco2014.read_instances

    def counting(path):
        seen.append(path.name)
        return original(path)

    monkeypatch.setattr(coco2014, "read_instances", counting)
    return seen


def _edit(path, change):
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


def test_second_load_reads_the_cache_and_equals_the_first(tmp_path, cache, parses):
    layout = write_coco(tmp_path / "data")
    first = coco2014.load(tmp_path / "data", {})
    assert parses == ["instances_train2014.json", "instances_val2014.json"]
    (entry,) = cache.glob("coco2014-*.npz")
    second = coco2014.load(tmp_path / "data", {})
    assert len(parses) == 2
    assert fingerprint(second) == fingerprint(first) and second.classes == layout["classes"]
    for split in ("train", "test"):
        assert second.splits[split].ids == layout["ids"][split]
        np.testing.assert_array_equal(second.splits[split].labels, layout["labels"][split])
        assert list(second.splits[split].image_paths) == list(first.splits[split].image_paths)
    assert second.info == first.info
    with np.load(entry, allow_pickle=False) as archive:  # plain arrays only
        assert {"header", "train_labels", "test_ids"} <= set(archive.files)


def test_an_edited_file_is_parsed_again_even_at_the_same_size(tmp_path, cache, parses):
    write_coco(tmp_path / "data")
    path = tmp_path / "data" / "annotations" / "instances_val2014.json"
    assert coco2014.load(tmp_path / "data", {}).splits["test"].labels.tolist() == [[0, 1, 0, 0, 0], [0, 0, 1, 0, 0]]
    size = path.stat().st_size
    _edit(path, lambda d: d["annotations"][0].update(category_id=3))  # image 42: bicycle → car, same length
    assert path.stat().st_size == size
    assert coco2014.load(tmp_path / "data", {}).splits["test"].labels.tolist() == [[0, 0, 1, 0, 0], [0, 0, 1, 0, 0]]
    assert len(parses) == 4 and len(list(cache.glob("coco2014-*.npz"))) == 1


def test_files_that_have_settled_are_trusted_by_their_stat(tmp_path, cache, parses, monkeypatch):
    write_coco(tmp_path / "data")
    monkeypatch.setattr(harness.cache, "SETTLED_S", 0.0)
    hashed = []
    original = annotations.sha256_of
    monkeypatch.setattr(annotations, "sha256_of", lambda path: hashed.append(path.name) or original(path))
    coco2014.load(tmp_path / "data", {})
    coco2014.load(tmp_path / "data", {})
    assert hashed == ["instances_train2014.json", "instances_val2014.json"] and len(parses) == 2
    path = tmp_path / "data" / "annotations" / "instances_train2014.json"
    os.utime(path)  # touched, same content: hashed again, not parsed
    coco2014.load(tmp_path / "data", {})
    assert len(hashed) == 4 and len(parses) == 2


@pytest.mark.parametrize("change", ["version", "root", "damaged"])
def test_another_version_root_or_a_damaged_entry_is_parsed_again(tmp_path, cache, parses, monkeypatch, change):
    write_coco(tmp_path / "data")
    expected = fingerprint(coco2014.load(tmp_path / "data", {}))
    root = tmp_path / "data"
    if change == "version":
        monkeypatch.setattr(coco2014, "PARSE_VERSION", "test")
    elif change == "root":
        (tmp_path / "data").rename(tmp_path / "moved")
        root = tmp_path / "moved"
    else:
        (entry,) = cache.glob("coco2014-*.npz")
        entry.write_bytes(entry.read_bytes()[:1000])
    assert fingerprint(coco2014.load(root, {})) == expected
    assert len(parses) == 4


def test_strings_survive_packing_exactly():
    strings = ["", "COCO_train2014_000000000009.jpg", "a\0b", "zebra ünïcode\n", "\ud800", "x"]
    assert annotations.unpack_strings(*annotations.pack_strings(strings)) == strings
    assert annotations.unpack_strings(*annotations.pack_strings([])) == []


LOAD_WHEN_TOLD = """
import sys, time
from pathlib import Path
import plugins.datasets.coco2014 as coco2014
from harness.data import fingerprint

root, folder, name = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
original = coco2014.read_instances
def slow_counting(path):
    with (folder / "parses.log").open("a") as out:
        out.write(f"{name} {path.name}\\n")
    time.sleep(0.5)  # the others arrive while this one parses
    return original(path)
coco2014.read_instances = slow_counting
(folder / f"{name}.ready").touch()
while not (folder / "go").exists():
    time.sleep(0.01)
print(fingerprint(coco2014.load(root, {})))
"""


def test_concurrent_processes_parse_once_and_agree(tmp_path):
    """As under torchrun: four processes load at the same moment; one parses, three wait and read."""
    write_coco(tmp_path / "data")
    environment = {**os.environ, "BENCH_CACHE_DIR": str(tmp_path / "cache"),
                   "PYTHONPATH": os.pathsep.join([str(TESTS.parent), os.environ.get("PYTHONPATH", "")])}
    names = [f"rank{k}" for k in range(4)]
    processes = [subprocess.Popen([sys.executable, "-c", LOAD_WHEN_TOLD, str(tmp_path / "data"), str(tmp_path), name],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)
                 for name in names]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("*.ready"))) < len(names) and time.monotonic() < deadline:
        time.sleep(0.05)
    (tmp_path / "go").touch()
    outputs = [process.communicate(timeout=120) for process in processes]
    assert all(process.returncode == 0 for process in processes), [err for _, err in outputs]
    assert len({out.strip() for out, _ in outputs}) == 1
    parsed_by = [line.split() for line in (tmp_path / "parses.log").read_text().splitlines()]
    assert [file for _, file in parsed_by] == ["instances_train2014.json", "instances_val2014.json"]
    assert len({rank for rank, _ in parsed_by}) == 1
