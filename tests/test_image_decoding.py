"""Images decode to the right pixels: 16-bit grayscale and RGB PNG, palette with transparency,
CMYK and EXIF-rotated JPEG, each against an independent decode (torchvision's libpng and
libjpeg decoders, ``ImageReadMode.RGB``, and the arrays the files were written from). EXIF
orientation is ignored, as torchvision's decoders do by default: pixels stay as stored."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_image

from harness.pipeline import decode_resized, read_sizes
from harness.pipeline import _decode as decode_whole  # the full-size decode decode_resized and decode_cropped share

RNG = np.random.default_rng(19)
pytestmark = [pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:Palette images with Transparency:UserWarning")]


def png16(path: Path, samples: np.ndarray) -> Path:
    """A 16-bit PNG (grayscale for H×W, RGB for H×W×3) written byte by byte, without Pillow."""
    height, width = samples.shape[:2]
    colour = 0 if samples.ndim == 2 else 2
    raw = b"".join(b"\0" + samples[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, colour, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


def torchvision_rgb(path: Path) -> np.ndarray:
    """torchvision's decode as H×W×3 uint8 (16-bit samples shifted to their high byte, as
    torchvision's ``to_dtype`` does)."""
    data = torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8)
    image = decode_image(data, ImageReadMode.RGB, apply_exif_orientation=False)
    if image.dtype == torch.uint16:
        image = (image.to(torch.int32) >> 8).to(torch.uint8)
    return image.permute(1, 2, 0).numpy()


@pytest.mark.parametrize("shape", [(5, 7), (6, 9, 3)], ids=["grayscale", "rgb"])
def test_16_bit_png_keeps_the_high_byte_of_every_sample(tmp_path, shape):
    samples = RNG.integers(0, 65536, shape, dtype=np.uint16)
    samples.flat[:2] = (65535, 255)  # the extremes Pillow's own convert gets wrong for grayscale
    path = png16(tmp_path / "deep.png", samples)
    expected = (samples >> 8).astype(np.uint8)
    expected = np.repeat(expected[..., None], 3, axis=2) if samples.ndim == 2 else expected
    decoded = decode_whole(path)
    assert np.array_equal(decoded, expected)
    assert np.array_equal(decoded, torchvision_rgb(path))


def test_palette_with_transparency_gives_the_palette_colours(tmp_path):
    palette = RNG.integers(0, 256, (16, 3), dtype=np.uint8)
    indices = RNG.integers(0, 16, (9, 11), dtype=np.uint8)
    image = Image.fromarray(indices, "P")
    image.putpalette(palette.tobytes())
    path = tmp_path / "palette.png"
    image.save(path, transparency=bytes([0, 128] + [255] * 14))
    assert Image.open(path).mode == "P" and "transparency" in Image.open(path).info
    decoded = decode_whole(path)
    assert np.array_equal(decoded, palette[indices])  # alpha dropped, colours kept
    assert np.array_equal(decoded, torchvision_rgb(path))


def test_cmyk_jpeg_matches_libjpeg(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(RNG.integers(0, 256, (16, 24, 4), dtype=np.uint8), "CMYK").save(path, quality=95)
    assert Image.open(path).mode == "CMYK"
    assert np.array_equal(decode_whole(path), torchvision_rgb(path))


def test_exif_orientation_is_ignored_as_torchvision_does(tmp_path):
    pixels = np.zeros((8, 16, 3), np.uint8)
    pixels[:, :8] = (250, 10, 10)  # left half red, right half blue, 16 wide and 8 high as stored
    pixels[:, 8:] = (10, 10, 250)
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    path = tmp_path / "rotated.jpg"
    image.save(path, quality=100, exif=exif.tobytes())
    assert Image.open(path).getexif()[0x0112] == 6
    decoded = decode_whole(path)
    assert decoded.shape == (8, 16, 3) and np.array_equal(decoded, torchvision_rgb(path))
    assert decoded[4, 2, 0] > 200 and decoded[4, 13, 2] > 200
    assert tuple(read_sizes([path], workers=1)[0]) == (8, 16)
    assert decode_resized(path, 4).shape == (4, 4, 3)
