"""The annotation cache and the resized-image cache are checked by a sha256 and rebuilt from the
source data, with one warning line naming the file, when planted (valid format, wrong content)
or corrupt (truncated, random bytes): real files, the real loaders, and a real ``bench run``."""

from __future__ import annotations

import io
import json
import logging

import numpy as np
import pytest
from layouts import write_coco
from PIL import Image

import plugins.datasets.coco2014 as coco2014
from harness import cache, pipeline
from harness.data import fingerprint
from test_run_safety import bench, run_args


def write_images(folder, count):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):
        paths.append(folder / f"{index}.png")
        Image.fromarray(rng.integers(0, 256, (20 + index, 17, 3), dtype=np.uint8)).save(paths[-1])
    return paths


@pytest.fixture
def caplog(caplog, monkeypatch):
    """pytest's caplog, seeing the harness's lines even after a CLI call turned their propagation off."""
    monkeypatch.setattr(logging.getLogger("harness"), "propagate", True)
    return caplog


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def plants(genuine: bytes, planted: bytes) -> dict[str, bytes]:
    rng = np.random.default_rng(1)
    return {"planted": planted, "truncated": genuine[: len(genuine) // 2],
            "random": rng.integers(0, 256, len(genuine), dtype=np.uint8).tobytes()}


@pytest.mark.parametrize("damage", ["planted", "truncated", "random"])
def test_a_damaged_image_cache_is_decoded_again(tmp_path, monkeypatch, caplog, damage):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    paths = write_images(tmp_path / "data", 5)
    key = pipeline.content_key(paths)
    clean = np.array(pipeline.image_cache(paths, 16, "toy", key, workers=1))
    data = tmp_path / "cache" / "images" / f"toy-16px-{key}" / "images.npy"
    genuine = data.read_bytes()
    buffer = io.BytesIO()
    np.save(buffer, np.zeros_like(clean))  # the right shape and type, the wrong pixels
    data.write_bytes(plants(genuine, buffer.getvalue())[damage])
    again = np.array(pipeline.image_cache(paths, 16, "toy", key, workers=1))
    assert np.array_equal(again, clean) and data.read_bytes() == genuine
    assert warnings_of(caplog) == [f"Warning: image cache {data} does not have the sha256 its meta.json records "
                                   "(planted or corrupt); decoding the images again"]


def test_a_checked_image_cache_is_trusted_by_its_stat_once_settled_and_hashed_again_when_it_changes(tmp_path,
                                                                                                     monkeypatch):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    paths = write_images(tmp_path / "data", 3)
    key = pipeline.content_key(paths)
    clean = np.array(pipeline.image_cache(paths, 16, "toy", key, workers=1))
    entry = tmp_path / "cache" / "images" / f"toy-16px-{key}"
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["sha256"] and meta["signature"] == cache.file_signature(entry / "images.npy")
    hashed = []
    original = pipeline.sha256_of
    monkeypatch.setattr(pipeline, "sha256_of", lambda path: hashed.append(1) or original(path))
    monkeypatch.setattr(cache, "SETTLED_S", 0.0)
    pipeline.image_cache(paths, 16, "toy", key, workers=1)
    assert hashed == []  # settled and unchanged: a stat, no hashing
    raw = bytearray((entry / "images.npy").read_bytes())
    raw[-1] ^= 0xFF  # one byte changed in place, same size and inode
    (entry / "images.npy").write_bytes(bytes(raw))
    assert np.array_equal(pipeline.image_cache(paths, 16, "toy", key, workers=1), clean)
    assert hashed


@pytest.mark.parametrize("damage", ["planted", "truncated", "random"])
def test_a_damaged_annotation_cache_is_parsed_again(tmp_path, monkeypatch, caplog, damage):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    parses = []
    original = coco2014.read_instances
    monkeypatch.setattr(coco2014, "read_instances", lambda path: parses.append(path.name) or original(path))
    write_coco(tmp_path / "data")
    clean = coco2014.load(tmp_path / "data", {})
    (entry,) = (tmp_path / "cache" / "annotations").glob("coco2014-*.npz")
    genuine = entry.read_bytes()
    with np.load(entry, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    buffer = io.BytesIO()
    arrays[next(name for name in arrays if name != "header" and arrays[name].dtype.kind in "iu")] += 1
    np.savez(buffer, **arrays)  # its own header, with the files' signatures and key, over other arrays
    entry.write_bytes(plants(genuine, buffer.getvalue())[damage])
    again = coco2014.load(tmp_path / "data", {})
    assert len(parses) == 4  # parsed twice: once clean, once after the damage
    assert fingerprint(again) == fingerprint(clean) and again.classes == clean.classes
    for split in ("train", "test"):
        assert again.splits[split].ids == clean.splits[split].ids
    why = "does not have the sha256 it records (planted or corrupt)" if damage == "planted" else "cannot be read (corrupt?)"
    assert warnings_of(caplog) == [f"Warning: annotation cache {entry} {why}; parsing the annotations again"]
    assert coco2014.load(tmp_path / "data", {}) and len(parses) == 4  # the rebuilt entry is used


def test_bench_run_decodes_a_planted_image_cache_again_and_scores_as_a_clean_run(tiny_root, tmp_path):
    environment = {"BENCH_CACHE_DIR": str(tmp_path / "cache")}
    clean = bench(*run_args(tiny_root, tmp_path / "clean", epochs=1), env=environment)
    assert clean.returncode == 0, clean.stderr
    planted = []
    for data in (tmp_path / "cache" / "images").glob("*/images.npy"):
        array = np.load(data)
        np.save(data, 255 - array)  # a valid array of the right shape: inverted images
        planted.append(data)
    assert planted
    again = bench(*run_args(tiny_root, tmp_path / "again", epochs=1), env=environment)
    assert again.returncode == 0, again.stderr
    assert sorted(again.stderr.splitlines()) == sorted(
        f"Warning: image cache {data} does not have the sha256 its meta.json records (planted or corrupt); decoding "
        "the images again" for data in planted)
    with np.load(tmp_path / "clean" / "r" / "scores.npz") as first, np.load(tmp_path / "again" / "r" / "scores.npz") as second:
        assert first["scores"].tobytes() == second["scores"].tobytes()
