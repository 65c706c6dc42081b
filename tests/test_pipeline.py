"""The decode-once image cache and the batch reader."""

from __future__ import annotations

import threading

import numpy as np
from PIL import Image

from harness import pipeline


def write_images(folder, count):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        path = folder / f"{i}.jpg"
        Image.fromarray(rng.integers(0, 256, (30 + i, 40, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def test_cache_equals_decoding_and_is_built_once_when_two_runs_race(tmp_path, monkeypatch):
    paths = write_images(tmp_path, 12)
    decoded = []
    original = pipeline.decode_resized

    def counting(path, size):
        decoded.append(path)
        return original(path, size)

    monkeypatch.setattr(pipeline, "decode_resized", counting)
    arrays = [None, None]

    def build(slot):
        arrays[slot] = pipeline.image_cache(paths, 24, "race-test")

    threads = [threading.Thread(target=build, args=(slot,)) for slot in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(decoded) == len(paths)
    expected = np.stack([original(p, 24) for p in paths])
    assert np.array_equal(arrays[0], expected) and np.array_equal(arrays[1], expected)
    assert np.array_equal(pipeline.decoded_images(paths, 24), expected)


def test_batches_come_in_the_requested_order_with_their_labels(tmp_path):
    images = np.arange(10 * 2 * 2 * 3, dtype=np.uint8).reshape(10, 2, 2, 3)
    labels = np.arange(10, dtype=np.float32)[:, None]
    order = [np.array([7, 2, 9]), np.array([0]), np.array([5, 1])]
    seen = list(pipeline.Batches(images, labels, order))
    assert [b[1][:, 0].tolist() for b in seen] == [[7, 2, 9], [0], [5, 1]]
    assert all(np.array_equal(b[0].numpy(), images[o]) for b, o in zip(seen, order))


def test_a_broken_image_names_the_file_and_bench_data_verify(tmp_path):
    import pytest

    from harness.errors import UserError

    paths = write_images(tmp_path, 3)
    paths[1].write_bytes(paths[1].read_bytes()[:100])
    with pytest.raises(UserError, match=r"cannot decode image .*1\.jpg .*`bench data verify`"):
        pipeline.image_cache(paths, 16, "broken-test")
