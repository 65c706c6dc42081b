"""Opening an image file named by a dataset: regular files of bounded size and pixel count only.

A dataset's file list may come from someone else (a manifest may name ``/dev/zero``, a FIFO
or a 10 GB file). Reading such a "file" hangs, or fills memory, before any decoder can
object. So an image is opened without blocking (``O_NONBLOCK``: opening a FIFO returns at
once), checked by ``fstat`` to be a regular file of at most ``max_bytes`` bytes, and, once
its header is read, to hold at most ``MAX_IMAGE_PIXELS`` pixels (a small file can declare a
huge image: a decompression bomb), before a single pixel is decoded.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

MAX_IMAGE_BYTES = 256 * 2**20  # far above any photograph of the benchmarks (VOC, COCO, NUS-WIDE: under 1 MB)
MAX_IMAGE_PIXELS = 100_000_000  # 100 megapixels: 400 MB decoded as RGBA, far above any benchmark photograph
_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))


class UnsafeImageFile(Exception):
    """The file is not one to decode; ``str()`` says why (a FIFO, too large, too many pixels)."""


def human(count: int) -> str:
    return f"{count / 2**20:.0f} MB" if count >= 2**20 else f"{count} bytes"


def open_image_file(path: Path | str, max_bytes: int = MAX_IMAGE_BYTES) -> BinaryIO:
    """``path`` opened for reading when it is a regular file of at most ``max_bytes`` bytes;
    ``UnsafeImageFile`` otherwise (``FileNotFoundError`` and other ``OSError`` pass through)."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as error:
        if error.errno == 6:  # ENXIO: a socket, or a FIFO without a writer on some systems
            raise UnsafeImageFile("not a regular file (a socket or FIFO); an image is a regular file") from None
        raise
    try:
        status = os.fstat(descriptor)
        kind = next((name for test, name in _KINDS if test(status.st_mode)), None)
        if kind is not None:
            raise UnsafeImageFile(f"not a regular file ({kind}); an image is a regular file")
        if status.st_size > max_bytes:
            raise UnsafeImageFile(f"{human(status.st_size)}, more than the {human(max_bytes)} an image may hold "
                                  "(--max-image-bytes)")
        os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def check_pixels(image) -> None:
    """Refuse an opened (not yet decoded) PIL image of more than ``MAX_IMAGE_PIXELS`` pixels."""
    pixels = image.width * image.height
    if pixels > MAX_IMAGE_PIXELS:
        raise UnsafeImageFile(f"{image.width}×{image.height} pixels, more than the {MAX_IMAGE_PIXELS:,} an image may "
                              "have (a decompression bomb?)")
