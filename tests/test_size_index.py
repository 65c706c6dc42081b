"""The cached index of original image sizes is checked by its sha256 and rebuilt when it was
planted or corrupted, never trusted: real files under a real cache folder."""

from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image

from harness.pipeline import image_sizes


def test_a_planted_or_corrupt_size_index_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    shapes = [(5, 7), (9, 4), (6, 6)]
    paths = []
    for index, (height, width) in enumerate(shapes):
        paths.append(tmp_path / f"{index}.png")
        Image.new("RGB", (width, height)).save(paths[-1])
    expected = np.array(shapes, dtype=np.int32)
    assert np.array_equal(image_sizes(paths, "toy", "k"), expected)
    entry = tmp_path / "cache" / "sizes" / "toy-k"
    index = entry / "sizes.npy"
    genuine = index.read_bytes()
    assert json.loads((entry / "meta.json").read_text())["sha256"]

    buffer = io.BytesIO()
    np.save(buffer, np.full((3, 2), 1, np.int32))  # planted: right shape and type, wrong sizes
    for planted in (buffer.getvalue(), genuine[:-4], b"\x93NUMPY garbage"):
        index.write_bytes(planted)
        assert np.array_equal(image_sizes(paths, "toy", "k"), expected)
        assert index.read_bytes() == genuine
    (entry / "meta.json").write_text("{}")  # a checksum removed
    index.write_bytes(buffer.getvalue())
    assert np.array_equal(image_sizes(paths, "toy", "k"), expected)
