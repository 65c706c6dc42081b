"""Train and test splits that share nothing: a test image seen in training inflates its scores.

``bench data verify`` lists every id or file content that two splits share; ``bench run``
refuses such a dataset before it trains, by id and by file (the same resolved path under
two ids), which needs no image to be read.

A run folder keeps its train split's ids and labels (``train_split.npz``: the record holds
only their hash), so that ``bench leaderboard submit`` refuses a run whose train ids include
a test id of its scores, after proving the file is the split the run trained on:
``split_hash(ids, labels) == result.json's dataset.train_hash``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from harness.data import split_hash
from harness.errors import UserError
from harness.files import atomic_write, load_npz
from harness.rundir import TRAIN_SPLIT_FILE


def check_disjoint(dataset, name: str, data_root: str | None) -> None:
    """One line naming the first image id, or file, that the train and test splits share."""
    train, test = dataset.splits["train"], dataset.splits["test"]
    where = f" --data-root {data_root}" if data_root else ""
    advice = f"a test image seen in training inflates its scores: fix the split (`bench data verify --dataset {name}{where}` lists them)"
    shared = set(map(str, train.ids)) & set(map(str, test.ids))
    if shared:
        first = next(str(i) for i in test.ids if str(i) in shared)
        raise UserError(f"dataset {name!r}: {len(shared)} image id(s) are in both train and test, first {first!r}; {advice}")
    files = {os.path.realpath(path): image_id for image_id, path in zip(train.ids, train.image_paths)}
    for image_id, path in zip(test.ids, test.image_paths):
        if os.path.realpath(path) in files:
            raise UserError(f"dataset {name!r}: test image {image_id!r} is the file {path} of train image "
                            f"{files[os.path.realpath(path)]!r}; {advice}")


def write_train_split(run_dir: Path, ids, labels: np.ndarray) -> None:
    """``run_dir/train_split.npz``: the train ``ids`` (strings) and ``labels`` (int8), compressed."""
    arrays = {"ids": np.asarray([str(i) for i in ids]), "labels": np.asarray(labels, dtype=np.int8)}
    atomic_write(Path(run_dir) / TRAIN_SPLIT_FILE, lambda stream: np.savez_compressed(stream, **arrays))


def check_submitted_split(run_dir: Path, train_hash: str, test_ids) -> str | None:
    """Refuse, in one line, a run folder whose ``train_split.npz`` is not the split its
    ``result.json`` records (``dataset.train_hash``) or shares an id with ``test_ids``. A folder
    without the file (made before the harness wrote it) passes: the warning line to show once
    it is accepted is returned."""
    path = Path(run_dir) / TRAIN_SPLIT_FILE
    if not path.is_file():
        return (f"Warning: {run_dir}: no {TRAIN_SPLIT_FILE}, so whether its train and test splits share an image "
                "could not be checked; runs of this harness write it: train again to have it checked")
    data = load_npz(path, "train split file")
    ids, labels = data.get("ids"), data.get("labels")
    if ids is None or labels is None or ids.ndim != 1 or labels.ndim != 2 or len(ids) != len(labels) \
            or labels.dtype != np.int8 or ids.dtype.kind != "U":
        raise UserError(f"{path}: not a train split file (1-D string ids and a 2-D int8 label array of as many rows); "
                        "submit the run folder as `bench run` wrote it")
    found = split_hash(ids.tolist(), labels)
    if found != train_hash:
        raise UserError(f"{path}: its ids and labels hash to {found[:12]}…, not result.json's dataset.train_hash "
                        f"{str(train_hash)[:12]}…; submit the run folder as `bench run` wrote it")
    shared = set(ids.tolist()) & set(map(str, test_ids))
    if shared:
        first = next(str(i) for i in test_ids if str(i) in shared)
        raise UserError(f"{path}: {len(shared)} train image id(s) are also test ids of the scores, first {first!r}; a "
                        "test image seen in training inflates its scores: train again on disjoint splits")
    return None
