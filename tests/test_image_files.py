"""``bench data verify`` and the pipeline open only regular files of bounded size and pixel
count: a FIFO, /dev/zero (under a memory limit), a socket, an oversized file and a
decompression bomb are each one problem line naming the file, in a real process that ends."""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.errors import UserError
from harness.image_files import MAX_IMAGE_PIXELS
from harness.pipeline import decode_resized, read_sizes
from layouts import write_csv_manifest

MEMORY_LIMIT = 3 * 2**30  # reading /dev/zero whole would pass this within seconds


def limited_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


@pytest.fixture
def hostile(tmp_path):
    """A manifest whose images are a good PNG, /dev/zero, a FIFO, a socket, a large file and a
    decompression bomb (a small PNG declaring more than MAX_IMAGE_PIXELS pixels)."""
    good = tmp_path / "good.png"
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(good)
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    sock = tmp_path / "sock.png"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock))
    large = tmp_path / "large.png"
    large.write_bytes(good.read_bytes() + b"\0" * 30_000)
    bomb = tmp_path / "bomb.png"
    Image.new("1", (12_000, 9_000)).save(bomb)  # 108 megapixels in a few kB
    assert bomb.stat().st_size < 100_000 and 12_000 * 9_000 > MAX_IMAGE_PIXELS
    images = {"good": good, "zero": Path("/dev/zero"), "fifo": fifo, "sock": sock, "large": large, "bomb": bomb}
    rows = [{"image": str(path), "labels": "a|b|c", "split": "train", "id": name} for name, path in images.items()]
    rows.append({"image": str(good), "labels": "a", "split": "test", "id": "test-good"})
    yield write_csv_manifest(tmp_path / "manifest.csv", rows), images
    server.close()


def test_data_verify_names_each_file_that_is_not_a_bounded_regular_image(hostile):
    manifest, images = hostile
    done = subprocess.run([sys.executable, "-m", "harness", "data", "verify", "--dataset", "manifest", "--data-root",
                           str(manifest), "--max-image-bytes", "20000", "--json", "--workers", "2"],
                          capture_output=True, text=True, timeout=300, preexec_fn=limited_memory)
    assert done.returncode == 1, done.stderr
    problems = {p["id"]: p["problem"] for p in json.loads(done.stdout)["problems"] if p["id"] != "test-good"}
    assert problems == {
        "zero": "not a regular file (a character device); an image is a regular file",
        "fifo": "not a regular file (a FIFO); an image is a regular file",
        "sock": "not a regular file (a socket or FIFO); an image is a regular file",
        "large": f"{images['large'].stat().st_size} bytes, more than the 20000 bytes an image may hold (--max-image-bytes)",
        "bomb": f"12000×9000 pixels, more than the {MAX_IMAGE_PIXELS:,} an image may have (a decompression bomb?)",
    }


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow warns; the harness refuses
def test_the_pipeline_refuses_them_in_one_line_naming_the_file(hostile):
    _, images = hostile
    assert decode_resized(images["good"], 4).shape == (4, 4, 3)
    for name in ("zero", "fifo", "bomb"):
        with pytest.raises(UserError) as refused:
            decode_resized(images[name], 4)
        assert str(refused.value).startswith(f"cannot decode image {images[name]} (") and "\n" not in str(refused.value)
        with pytest.raises(UserError, match=f"cannot read the size of image {images[name]} "):
            read_sizes([images[name]], workers=1)
