"""The input pipeline: the resized cache and decoding per batch give the same bytes; caches are
keyed by content, bounded by the disk, and survive kills; ``bench cache`` lists and clears them."""

from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torchvision import transforms

from harness import cache, pipeline
from harness.cli import main
from harness.errors import UserError
from harness.train import epoch_generator


def write_images(folder: Path, count: int, suffix: str = "jpg") -> list[Path]:
    """Files of different sizes and aspect ratios (and modes: every third is greyscale)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        pixels = rng.integers(0, 256, (30 + 7 * i, 40 + 3 * (i % 5), 3), dtype=np.uint8)
        image = Image.fromarray(pixels).convert("L") if i % 3 == 2 else Image.fromarray(pixels)
        path = folder / f"{i}.{suffix}"
        image.save(path)
        paths.append(path)
    return paths


def torchvision_resize(path: Path, size: int) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(transforms.Resize((size, size))(image.convert("RGB")))


def epoch_images(source, count: int, seed: int = 0, epoch: int = 0, batch: int = 4) -> np.ndarray:
    order = torch.randperm(count, generator=epoch_generator(seed, epoch, 0)).numpy()
    batches = [order[i:i + batch] for i in range(0, count, batch)]
    labels = np.zeros((count, 1), np.float32)
    read = pipeline.Batches(source, labels, batches, crop_generator=epoch_generator(seed, epoch, 2))
    return np.concatenate([images.numpy() for images, _ in read]), order


def harness_entries(kind: str) -> list[cache.Entry]:
    return [e for e in cache.entries() if e.kind == kind]


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("BENCH_CACHE_DIR", str(root))
    return root


def test_cache_equals_torchvisions_resize_and_is_built_once_when_two_runs_race(tmp_path, fresh_cache, monkeypatch):
    paths = write_images(tmp_path / "data", 12)
    decoded = []
    original = pipeline.decode_resized

    def counting(path, size):
        decoded.append(path)
        return original(path, size)

    monkeypatch.setattr(pipeline, "decode_resized", counting)
    arrays = [None, None]
    key = pipeline.content_key(paths)

    def build(slot):
        arrays[slot] = pipeline.image_cache(paths, 24, "race", key)

    threads = [threading.Thread(target=build, args=(slot,)) for slot in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(decoded) == len(paths)
    expected = np.stack([torchvision_resize(p, 24) for p in paths])
    assert np.array_equal(arrays[0], expected) and np.array_equal(arrays[1], expected)


def test_m1_batches_are_the_same_bytes_from_the_cache_and_from_decoding(tmp_path, fresh_cache):
    for suffix in ("jpg", "png"):
        paths = write_images(tmp_path / suffix, 10, suffix)
        cached = pipeline.SplitImages(paths, 32, name=suffix, fingerprint="f", cache=True).source(None)
        decoding = pipeline.SplitImages(paths, 32, name=suffix, fingerprint="f", cache=False).source(None)
        assert isinstance(cached, pipeline.ResizedImages) and isinstance(decoding, pipeline.DecodedImages)
        from_cache, order = epoch_images(cached, len(paths))
        from_files, _ = epoch_images(decoding, len(paths))
        assert np.array_equal(from_cache, from_files)
        assert np.array_equal(from_files, np.stack([torchvision_resize(paths[i], 32) for i in order]))


def test_without_cache_nothing_is_written(tmp_path, fresh_cache):
    paths = write_images(tmp_path / "data", 6)
    images = pipeline.SplitImages(paths, 16, name="none", fingerprint="f", cache=False)
    epoch_images(images.source(None), len(paths))
    epoch_images(images.source("random-resized"), len(paths))
    assert not fresh_cache.exists()


def test_a_crop_epoch_is_the_same_with_one_or_several_workers(tmp_path, fresh_cache):
    paths = write_images(tmp_path / "data", 13)
    one = pipeline.SplitImages(paths, 24, name="w", fingerprint="f", cache=False, workers=1)
    several = pipeline.SplitImages(paths, 24, name="w", fingerprint="f", cache=True, workers=3)
    first, _ = epoch_images(one.source("random-resized"), len(paths), seed=3, epoch=1, batch=5)
    second, _ = epoch_images(several.source("random-resized"), len(paths), seed=3, epoch=1, batch=5)
    assert np.array_equal(first, second)
    assert not np.array_equal(first, epoch_images(one.source(None), len(paths), seed=3, epoch=1, batch=5)[0])


def test_batches_come_in_the_requested_order_with_their_labels():
    images = np.arange(10 * 2 * 2 * 3, dtype=np.uint8).reshape(10, 2, 2, 3)
    labels = np.arange(10, dtype=np.float32)[:, None]
    order = [np.array([7, 2, 9]), np.array([0]), np.array([5, 1])]
    seen = list(pipeline.Batches(pipeline.ResizedImages(images), labels, order))
    assert [b[1][:, 0].tolist() for b in seen] == [[7, 2, 9], [0], [5, 1]]
    assert all(np.array_equal(b[0].numpy(), images[o]) for b, o in zip(seen, order))


def test_a_broken_image_names_the_file_and_bench_data_verify(tmp_path, fresh_cache):
    paths = write_images(tmp_path / "data", 3)
    paths[1].write_bytes(paths[1].read_bytes()[:100])
    with pytest.raises(UserError, match=r"cannot decode image .*1\.jpg .*`bench data verify`"):
        pipeline.image_cache(paths, 16, "broken", pipeline.content_key(paths))
    images = pipeline.SplitImages(paths, 16, name="broken", fingerprint="f", cache=False)
    with pytest.raises(UserError, match=r"image .*1\.jpg .*`bench data verify`"):
        epoch_images(images.source("random-resized"), len(paths))


def test_three_spellings_of_one_data_root_make_one_cache(tmp_path, fresh_cache, monkeypatch):
    root = tmp_path / "data"
    write_images(root, 5)
    (tmp_path / "link").symlink_to(root)
    monkeypatch.chdir(tmp_path)
    spellings = [str(root), "data", str(tmp_path / "data" / ".." / "data"), "link"]
    for spelling in spellings:
        paths = [Path(spelling) / f"{i}.jpg" for i in range(5)]
        pipeline.SplitImages(paths, 16, name="spelled", fingerprint="f", cache=True).source(None)
    assert len(harness_entries("images")) == 1
    os.utime(root / "3.jpg", ns=(1, 1))  # the same path with other content is another cache
    paths = [root / f"{i}.jpg" for i in range(5)]
    pipeline.SplitImages(paths, 16, name="spelled", fingerprint="f", cache=True).source(None)
    assert len(harness_entries("images")) == 2


def test_a_cache_that_would_not_fit_is_refused_in_one_line_before_any_work(tmp_path, fresh_cache, monkeypatch):
    paths = write_images(tmp_path / "data", 8)
    monkeypatch.setattr(cache, "disk_space", lambda folder: (100_000, 10**12))
    monkeypatch.setattr(pipeline, "decode_resized", lambda path, size: pytest.fail("decoded before refusing"))
    with pytest.raises(cache.NoSpace) as refused:
        pipeline.image_cache(paths, 64, "big", pipeline.content_key(paths))
    message = str(refused.value)
    assert "\n" not in message and str(fresh_cache / "images") in message
    assert "needs 98.4 KB" in message  # 8 images of 64 x 64 x 3 bytes and the 128-byte header
    assert "100.0 KB is free" in message and "2.0 GB stays free" in message
    assert not list(fresh_cache.rglob("*.npy*"))


def test_a_run_that_finds_no_room_decodes_every_batch_instead(tmp_path, fresh_cache, monkeypatch, caplog):
    paths = write_images(tmp_path / "data", 6)
    monkeypatch.setattr(cache, "disk_space", lambda folder: (10_000, 10**12))
    monkeypatch.setattr(logging.getLogger("harness"), "propagate", True)  # an earlier CLI call may have turned it off
    images = pipeline.SplitImages(paths, 32, name="short", fingerprint="f", cache=True)
    with caplog.at_level("INFO", logger="harness"):
        source = images.source(None)
    assert isinstance(source, pipeline.DecodedImages)
    assert "cannot cache 6 short images at 32 px" in caplog.text and "decoding every batch" in caplog.text
    found, order = epoch_images(source, 6)
    assert np.array_equal(found, np.stack([torchvision_resize(paths[i], 32) for i in order]))


@pytest.fixture
def tmpfs_3mb(tmp_path):
    folder = tmp_path / "tmpfs"
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(folder)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=True)  # lazily: a failed test may still map a file


def test_on_a_real_3mb_disk_small_caches_fit_big_ones_are_refused_and_a_full_disk_is_one_line(
        tmp_path, tmpfs_3mb, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmpfs_3mb))
    paths = write_images(tmp_path / "data", 20)
    key = pipeline.content_key(paths)
    small = pipeline.image_cache(paths, 64, "small", key)  # 246 KB
    assert np.array_equal(small[5], torchvision_resize(paths[5], 64))
    with pytest.raises(cache.NoSpace, match=rf"cannot cache 20 big images at 256 px in {tmpfs_3mb}/images: it needs "
                                            r"3\.9 MB, 2\.[0-9] MB is free and 157\.3 KB stays free"):
        pipeline.image_cache(paths, 256, "big", key)  # 3.9 MB
    monkeypatch.setattr(cache, "disk_space", lambda folder: (10**12, 10**13))  # the estimate is fooled: the disk is not
    full = r"^cannot write .*images\.npy: the disk filled up \(.* free, 3\.9 MB needed\)"
    with pytest.raises(cache.NoSpace, match=full):
        pipeline.image_cache(paths, 256, "big", key)  # posix_fallocate finds the disk full
    monkeypatch.delattr(os, "posix_fallocate")
    with pytest.raises(cache.NoSpace, match=r"^cannot write .*images\.npy: the disk filled up"):
        pipeline.image_cache(paths, 256, "big", key)  # the buffered writes find it full
    status = os.statvfs(tmpfs_3mb)
    assert not list(tmpfs_3mb.rglob("*.partial")) and status.f_bavail * status.f_frsize > 2_000_000


def test_a_build_killed_by_sigkill_is_cleaned_up_and_built_by_the_next(tmp_path, fresh_cache, monkeypatch):
    paths = write_images(tmp_path / "data", 12)
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from harness import pipeline
        paths = [Path(p) for p in {[str(p) for p in paths]!r}]
        decode, done = pipeline.decode_resized, []
        def dying(path, size):
            done.append(path)
            if len(done) == 7:
                os.kill(os.getpid(), signal.SIGKILL)
            return decode(path, size)
        pipeline.decode_resized = dying
        pipeline.image_cache(paths, 24, "killed", pipeline.content_key(paths), workers=1)
    """)
    killed = subprocess.run([sys.executable, "-c", script], env={**os.environ, "BENCH_CACHE_DIR": str(fresh_cache)},
                            capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    (entry,) = [p for p in (fresh_cache / "images").iterdir() if p.is_dir()]
    assert [p.name for p in entry.iterdir()] == ["images.npy.partial"]
    need = 128 + 12 * 24 * 24 * 3  # allocated in full by the killed build, so it counts as free
    monkeypatch.setattr(cache, "disk_space", lambda folder: (need - 1000, 10**5))  # a margin of 5 KB
    array = pipeline.image_cache(paths, 24, "killed", pipeline.content_key(paths))
    assert np.array_equal(array, np.stack([torchvision_resize(p, 24) for p in paths]))
    assert sorted(p.name for p in entry.iterdir()) == ["images.npy", "last-used", "meta.json"]


def test_bench_cache_lists_and_clears_only_what_the_harness_made(tmp_path, fresh_cache):
    paths = write_images(tmp_path / "data", 4)
    pipeline.SplitImages(paths, 16, name="listed", fingerprint="f", cache=True).source("random-resized")
    pipeline.SplitImages(paths, 16, name="listed", fingerprint="f", cache=True).source(None)
    (fresh_cache / "shapes" / "v1").mkdir(parents=True)
    (fresh_cache / "shapes" / "v1" / "labels.csv").write_text("x" * 1000)
    (fresh_cache / "annotations").mkdir()
    (fresh_cache / "annotations" / "coco.json").write_text("{}")
    (fresh_cache / "mine").mkdir()
    (fresh_cache / "mine" / "notes.txt").write_text("keep me")
    month_ago = time.time() - 30 * 86400
    os.utime(fresh_cache / "shapes" / "v1" / "labels.csv", (month_ago, month_ago))

    listed = CliRunner().invoke(main, ["cache", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    entries = {e["kind"] + "/" + e["name"].split("-")[0]: e for e in json.loads(listed.output)["entries"]}
    assert set(entries) == {"images/listed", "sizes/listed", "shapes/v1", "annotations/coco.json", "/mine"}
    image_entry = entries["images/listed"]
    data = Path(image_entry["path"])
    lock = data.with_name(data.name + ".lock")
    assert image_entry["bytes"] == sum(p.stat().st_size for p in data.iterdir()) + lock.stat().st_size
    assert image_entry["what"] == "4 listed images at 16 px" and entries["shapes/v1"]["bytes"] == 1000
    assert entries["shapes/v1"]["last_used"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(month_ago))
    assert not entries["/mine"]["harness"]
    table = CliRunner().invoke(main, ["cache", "list"]).output
    assert "4 listed images at 16 px" in table and "not made by the harness" in table

    old = CliRunner().invoke(main, ["cache", "clear", "--older-than", "7"])
    assert old.exit_code == 0 and old.output.splitlines()[0] == "removed shapes/v1 (1.0 KB)"
    assert len(old.output.splitlines()) == 2 and not (fresh_cache / "shapes" / "v1").exists()
    everything = CliRunner().invoke(main, ["cache", "clear"])
    removed = [line for line in everything.output.splitlines() if line.startswith("removed ")]
    assert len(removed) == 3 and "annotations/coco.json (2 B)" in everything.output
    assert sorted(p.name for p in fresh_cache.rglob("*")) == ["annotations", "images", "mine", "notes.txt", "shapes",
                                                              "sizes"]
    bad = CliRunner().invoke(main, ["cache", "clear", "--older-than", "-1"])
    assert bad.exit_code == 1 and "--older-than -1: give a number of days" in bad.output


def test_clear_keeps_an_entry_that_another_process_is_building(tmp_path, fresh_cache):
    from filelock import FileLock

    paths = write_images(tmp_path / "data", 2)
    pipeline.image_cache(paths, 16, "busy", pipeline.content_key(paths))
    (entry,) = harness_entries("images")
    with FileLock(str(entry.path) + ".lock"):
        result = subprocess.run([sys.executable, "-m", "harness", "cache", "clear"], capture_output=True, text=True,
                                env={**os.environ, "BENCH_CACHE_DIR": str(fresh_cache)})
    assert result.returncode == 0 and f"kept images/{entry.name}" in result.stdout and entry.path.is_dir()


def test_write_file_reports_enospc_in_one_line_and_leaves_no_partial(tmp_path, monkeypatch):
    target = tmp_path / "x.bin"

    def full(chunks):
        yield b"abc"
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(cache.NoSpace, match=r"^cannot write .*x\.bin: the disk filled up \(.* free, 6 B needed\)"):
        cache.write_file(target, full(None), 6)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_run_gives_the_same_scores_with_and_without_the_cache(tiny_root, tmp_path, monkeypatch):
    from conftest import TINY_PLUGIN

    scores = {}
    for option in ("--cache", "--no-cache"):
        monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / option))
        out = tmp_path / option / "runs"
        result = CliRunner().invoke(main, ["run", "--plugin", TINY_PLUGIN, "--dataset", "tiny", "--data-root",
                                           str(tiny_root), "--model", "tiny-cnn", "--protocol", "smoke", "--size", "32",
                                           "--epochs", "2", "--device", "cpu", "--out", str(out), "--quiet", option],
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.output
        scores[option] = np.load(out / "tiny-tiny-cnn-flip-32-smoke-seed0" / "scores.npz")["scores"]
        record = json.loads((out / "tiny-tiny-cnn-flip-32-smoke-seed0" / "result.json").read_text())
        assert record["pipeline"] == {"version": "3", "input_crop": None}
    assert len(list((tmp_path / "--cache" / "images").iterdir())) == 4  # train and test, each with its lock
    assert sorted(p.name for p in (tmp_path / "--no-cache").iterdir()) == ["runs"]
    assert np.array_equal(scores["--cache"], scores["--no-cache"])
