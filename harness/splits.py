"""Train and test splits that share nothing: a test image seen in training inflates its scores.

``bench data verify`` lists every id or file content that two splits share; ``bench run``
refuses such a dataset before it trains, by id and by file (the same resolved path under
two ids), which needs no image to be read.
"""

from __future__ import annotations

import os

from harness.errors import UserError


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
