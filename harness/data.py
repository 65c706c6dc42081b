"""Dataset fingerprints: a hash that proves which images and labels a run was trained and scored on.

``split_hash`` hashes one split's ordered (id, label row) pairs; the fingerprint composes
the class list and the train and test split hashes:

    fingerprint = sha256(classes ‖ split_hash(train) ‖ split_hash(test))[:32]

A result stores the fingerprint and the train-split hash. Its ``scores.npz`` holds the
test ids and labels, so anyone can recompute the test-split hash and check that the
composition equals the dataset's declared canonical fingerprint: a submission cannot
relabel, drop or reorder test images without the check failing. Images themselves are not
hashed (that would mean reading every file); ids and labels are what define a benchmark.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np

from harness.specs import Dataset

FINGERPRINT_LENGTH = 32
_FIELD, _RECORD = b"\x1f", b"\x1e"


def split_hash(ids: Sequence, labels: np.ndarray) -> str:
    """sha256 over the ordered (id, int8 label row) pairs of one split."""
    digest = hashlib.sha256()
    rows = np.ascontiguousarray(labels, dtype=np.int8)
    if rows.ndim != 2 or rows.shape[0] != len(ids):
        raise ValueError(f"{len(ids)} ids but labels of shape {rows.shape}")
    digest.update(f"{rows.shape[0]}x{rows.shape[1]}".encode() + _RECORD)
    for image_id, row in zip(ids, rows):
        digest.update(str(image_id).encode() + _FIELD + row.tobytes() + _RECORD)
    return digest.hexdigest()


def compose(classes: Sequence[str], train_hash: str, test_hash: str) -> str:
    """The fingerprint of a dataset with these classes and split hashes."""
    digest = hashlib.sha256()
    digest.update(_FIELD.join(str(c).encode() for c in classes) + _RECORD)
    digest.update(train_hash.encode() + _RECORD + test_hash.encode())
    return digest.hexdigest()[:FINGERPRINT_LENGTH]


def fingerprint(dataset: Dataset) -> str:
    """The fingerprint of a loaded dataset's classes and its train and test splits."""
    return compose(dataset.classes, train_hash(dataset), split_hash(dataset.splits["test"].ids, dataset.splits["test"].labels))


def train_hash(dataset: Dataset) -> str:
    """The train split's hash, which a result records beside the fingerprint."""
    return split_hash(dataset.splits["train"].ids, dataset.splits["train"].labels)
