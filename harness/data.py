"""Dataset records: the fingerprint that says two runs saw the same images and labels."""

from __future__ import annotations

import hashlib

import numpy as np

from harness.specs import Dataset


def fingerprint(dataset: Dataset) -> str:
    """sha256 over the class list and, per split in name order, the ordered (id, label row) pairs.

    Images themselves are not hashed (that would mean reading every file); ids and labels
    are what define a benchmark split. Coverage below 1 changes the ids, hence the hash.
    """
    digest = hashlib.sha256()
    digest.update("\x1f".join(dataset.classes).encode())
    for split_name in sorted(dataset.splits):
        split = dataset.splits[split_name]
        digest.update(b"\x1e" + split_name.encode())
        labels = np.ascontiguousarray(split.labels, dtype=np.int8)
        for image_id, row in zip(split.ids, labels):
            digest.update(str(image_id).encode() + b"\x1f" + row.tobytes())
    return digest.hexdigest()[:16]
