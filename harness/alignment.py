"""``align_by_id``: the scores of several runs on one test set, put in one image order.

Runs store their test images in any order, so every use that puts two runs' scores side by
side (``bench fuse``, ``bench compare`` and ``bench metrics``, a leaderboard fusion fused
again from its members, a reproduced run compared with its submission) matches them by
image id here, and refuses in one wording what would make the comparison meaningless:
repeated ids, ids only one run has, another number of classes, or other labels for one image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.errors import BadInput


@dataclass
class Scored:
    """One run's test scores as ``align_by_id`` takes them: ``name`` is how a refusal names
    it (a path, a submission); ``labels`` may be None where they are not at hand."""

    name: str
    ids: np.ndarray
    scores: np.ndarray
    labels: np.ndarray | None = None


def align_by_id(runs: Sequence[Scored], hint: str) -> list[np.ndarray]:
    """Every run's scores in the first run's image order, after checking that each scores the
    same test set as the first: the same unique ids, the same number of classes and, where
    both have labels, the same labels. A refusal is one ``BadInput`` line naming both runs
    and the first image at fault, ending with ``hint`` (what to do)."""
    reference = runs[0]
    ids, _ = _unique_ids(reference)
    aligned = []
    for run in runs:
        other, sorter = _unique_ids(run)
        order = sorter[np.minimum(np.searchsorted(other, ids, sorter=sorter), len(other) - 1)] if len(other) else sorter
        if len(other) != len(ids) or not np.array_equal(other[order], ids):
            only_here, only_there = ids[~np.isin(ids, other)], other[~np.isin(other, ids)]
            parts = [f"{len(found)} only in {who.name} (first '{found[0]}')"
                     for who, found in ((reference, only_here), (run, only_there)) if found.size]
            raise BadInput(f"{reference.name} and {run.name} score different test sets: {'; '.join(parts)}; {hint}")
        if run.scores.shape[1:] != reference.scores.shape[1:]:
            raise BadInput(f"{reference.name} has {reference.scores.shape[1]} classes but {run.name} has "
                           f"{run.scores.shape[1]}; {hint}")
        if reference.labels is not None and run.labels is not None:
            labels = run.labels[order]
            differ = reference.labels != labels
            if differ.any():
                row, column = divmod(int(np.argmax(differ)), differ.shape[1])
                raise BadInput(f"{reference.name} and {run.name} score different test sets: labels differ for image "
                               f"'{ids[row]}', class {column} ({reference.labels[row, column]} vs "
                               f"{labels[row, column]}); {hint}")
        aligned.append(run.scores[order])
    return aligned


def _unique_ids(run: Scored) -> tuple[np.ndarray, np.ndarray]:
    """The run's ids as strings and the order that sorts them; a repeated id is refused."""
    ids = np.asarray(run.ids).astype(str)
    sorter = np.argsort(ids)
    ordered = ids[sorter]
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    if repeated.size:
        raise BadInput(f"{run.name}: image id '{repeated[0]}' appears more than once; ids must be unique")
    return ids, sorter
