"""Stored test scores: float32 logits as byte planes, class by class, in a deflated ``.npz``.

A network's float32 logits carry about 23 bits of noise in their mantissas, which no
lossless coder removes; what can be saved is the sign and exponent byte, nearly constant
within a class. ``np.savez_compressed`` deflates the four bytes of each value interleaved,
so deflate barely sees that redundancy. Storing byte ``b`` of every value of class ``c``
contiguously (array ``score_planes[b, c, :]``) lets it: on one COCO-sized score matrix
(40,137 × 80) this is 10.17 MB instead of 11.55 MB (leaderboards/README.md has the
measurements). The file is an ordinary ``.npz`` read through ``harness.files.load_npz``
(no pickles, bounded members); decoding is a transpose and a view, exact to the bit.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from harness.errors import BadInput
from harness.files import atomic_write, load_npz

LAYOUT = "float32-byte-planes-by-class"
_LITTLE_FLOAT32 = np.dtype("<f4")


def to_planes(scores: np.ndarray) -> np.ndarray:
    """(N, C) float32 scores as a (4, C, N) uint8 array: byte ``b`` of ``scores[n, c]`` at ``[b, c, n]``."""
    values = np.ascontiguousarray(np.asarray(scores, dtype=_LITTLE_FLOAT32))
    n, c = values.shape
    return np.ascontiguousarray(values.view(np.uint8).reshape(n, c, 4).transpose(2, 1, 0))


def from_planes(planes: np.ndarray) -> np.ndarray:
    """The inverse of ``to_planes``: (N, C) float32 scores, bit for bit."""
    return np.ascontiguousarray(planes.transpose(2, 1, 0)).view(_LITTLE_FLOAT32)[..., 0].astype(np.float32)


def packed_bytes(scores: np.ndarray, labels: np.ndarray, ids) -> bytes:
    """The stored file's bytes: ``score_planes``, ``labels`` (int8) and ``ids`` (unicode), deflated."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, score_planes=to_planes(scores), labels=np.asarray(labels, dtype=np.int8),
                        ids=np.asarray([str(i) for i in ids]))
    return buffer.getvalue()


def write_packed(path: Path, scores: np.ndarray, labels: np.ndarray, ids) -> None:
    data = packed_bytes(scores, labels, ids)
    atomic_write(path, lambda stream: stream.write(data))


def read_packed(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(scores, labels, ids)`` from a stored file, every array's dtype and shape checked; the
    archive is read with ``load_npz`` (no pickles, every member's size bounded)."""
    data = load_npz(path, "stored scores file", ": restore it from version control")
    if sorted(data) != ["ids", "labels", "score_planes"]:
        raise BadInput(f"{path}: holds {', '.join(sorted(data))}; expected score_planes, labels, ids")
    planes, labels, ids = data["score_planes"], data["labels"], data["ids"]
    if planes.dtype != np.uint8 or planes.ndim != 3 or planes.shape[0] != 4:
        raise BadInput(f"{path}: score_planes is {planes.dtype} {planes.shape}; expected uint8 (4, classes, images)")
    count, classes = planes.shape[2], planes.shape[1]
    if labels.dtype != np.int8 or labels.shape != (count, classes):
        raise BadInput(f"{path}: labels is {labels.dtype} {labels.shape}; expected int8 ({count}, {classes})")
    if ids.dtype.kind != "U" or ids.shape != (count,):
        raise BadInput(f"{path}: ids is {ids.dtype} {ids.shape}; expected {count} strings")
    return from_planes(planes), labels, ids
