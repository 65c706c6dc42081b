"""Comparing two runs (``harness.compare``, ``bench compare``): the paired bootstrap of their mAP on the same test images, and every
way their training differed.

``compare(A, B)`` refuses runs scored on different test sets (other ids, or other labels
for the same ids): a difference in mAP between them measures the data, not the method. For
runs whose ``result.json`` is at hand it lists every difference in protocol, epochs, batch
size, input size, augmentation, loss, model, backbone, initialisation, precision and
dataset fingerprint, so that a 2-epoch baseline is never silently compared with a 40-epoch
method.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.declared import declared_facts
from harness.errors import BadInput, UserError
from harness.metrics import paired_bootstrap, validate
from harness.results import RESULT_FILE, RunRecord
from harness.rundir import read_scores


def _load_npy(path: str) -> np.ndarray:
    file = Path(path)
    if not file.is_file():
        raise BadInput(f"{file}: no such file; give an N×C .npy array")
    try:
        array = np.load(file, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise BadInput(f"{file}: not a readable .npy file ({' '.join(str(error).split())})") from None
    if not isinstance(array, np.ndarray):
        array.close()
        raise BadInput(f"{file}: an .npz archive; pass it alone (bench metrics {file}) instead of with LABELS")
    return array


def load_scored(inputs: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(scores, labels, ids)`` from ``SCORES LABELS`` (.npy, no ids) or one run folder / .npz,
    checked, with the file names in any error."""
    if len(inputs) == 2:
        scores, labels, ids = _load_npy(inputs[0]), _load_npy(inputs[1]), None
        names = (inputs[0], inputs[1])
    elif len(inputs) == 1:
        path = Path(inputs[0])
        if path.is_file() and not zipfile.is_zipfile(path):
            raise BadInput(f"{path}: not a .npz archive; give a run folder or scores.npz, or SCORES.npy LABELS.npy")
        scores, labels, ids = read_scores(path)
        names = (f"{path} (scores)", f"{path} (labels)")
        if len(ids) != len(scores):
            raise BadInput(f"{path}: {len(ids)} ids for {len(scores)} rows of scores; the run folder is damaged")
    else:
        raise BadInput(f"got {len(inputs)} paths; give SCORES.npy LABELS.npy, or one run folder or scores.npz")
    scores, labels = validate(scores, labels, names=names)
    return scores, labels, ids


def aligned(run_a: str, run_b: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores of both runs and their shared labels, B reordered to A's image ids; refuses
    different id sets, duplicate ids, and labels that differ (different test sets)."""
    scores_a, labels_a, ids_a = load_scored((run_a,))
    scores_b, labels_b, ids_b = load_scored((run_b,))
    ids_a, ids_b = np.asarray(ids_a).astype(str), np.asarray(ids_b).astype(str)
    for run, ids in ((run_a, ids_a), (run_b, ids_b)):
        unique, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            raise BadInput(f"{run}: image id '{unique[counts > 1][0]}' appears more than once; ids must be unique")
    only_a, only_b = ids_a[~np.isin(ids_a, ids_b)], ids_b[~np.isin(ids_b, ids_a)]
    if only_a.size or only_b.size:
        parts = [f"{len(ids)} only in {run} (first '{ids[0]}')" for run, ids in ((run_a, only_a), (run_b, only_b)) if ids.size]
        raise BadInput(f"{run_a} and {run_b} score different test sets: {'; '.join(parts)}; compare runs on the same test split")
    if scores_a.shape[1] != scores_b.shape[1]:
        raise BadInput(f"{run_a} has {scores_a.shape[1]} classes but {run_b} has {scores_b.shape[1]}; compare runs on the same dataset")
    sorter = np.argsort(ids_b)
    position = sorter[np.searchsorted(ids_b, ids_a, sorter=sorter)]
    scores_b, labels_b = scores_b[position], labels_b[position]
    differ = labels_a != labels_b
    if differ.any():
        row, column = divmod(int(np.argmax(differ)), differ.shape[1])
        raise BadInput(
            f"{run_a} and {run_b} score different test sets: labels differ for image '{ids_a[row]}', class {column} "
            f"({labels_a[row, column]} vs {labels_b[row, column]}); compare runs on the same test labels"
        )
    return scores_a, scores_b, labels_a


def read_record(path: str) -> RunRecord | None:
    """The record of a run folder (or of the folder holding a ``scores.npz``), if it has one."""
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    if not (folder / RESULT_FILE).is_file():
        return None
    return RunRecord.read(folder, upgrade=True)


def training_facts(record: RunRecord) -> dict[str, Any]:
    """The facts of a run that a fair comparison holds fixed, by name."""
    from harness.protocol import PROTOCOLS

    protocol = PROTOCOLS.get(record.protocol.name)
    deviations = record.protocol.deviations

    def setting(name: str):
        if name in deviations:
            return deviations[name]["used"]
        return getattr(protocol, name) if protocol and protocol.hash == record.protocol.hash else None

    return {
        "kind": record.kind,
        "protocol": f"{record.protocol.name} (hash {record.protocol.hash})",
        "epochs": setting("epochs"),
        "batch size": setting("batch_size"),
        "size": record.size if record.kind == "train" else "+".join(str(m.size) for m in record.members or []),
        "augmentation": record.augmentation.name if record.augmentation else None,
        "loss": record.loss.name if record.loss else None,
        "model": record.model.name if record.model else None,
        "backbone": (record.model.backbone or record.model.name) if record.model else None,
        "init": record.model.pretrained.mode if record.model else None,
        "precision": record.precision,
        "dataset fingerprint": record.dataset.fingerprint,
        "deviations": ", ".join(sorted(deviations)) or "none",
        **declared_facts(record),
    }


def differences(a: RunRecord, b: RunRecord) -> list[dict[str, Any]]:
    """Every training fact that differs between two runs: ``{"field", "a", "b"}``."""
    facts_a, facts_b = training_facts(a), training_facts(b)
    return [{"field": key, "a": facts_a[key], "b": facts_b[key]} for key in facts_a if facts_a[key] != facts_b[key]]


@dataclass
class Comparison:
    """B − A on the same test images: ``paired`` is ``metrics.paired_bootstrap``'s result;
    ``differences`` what differs in training (``None`` when a run has no result.json)."""

    run_a: str
    run_b: str
    paired: dict[str, Any]
    differences: list[dict[str, Any]] | None
    largest_changes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def excludes_zero(self) -> bool:
        low, high = self.paired["map_diff_interval"]
        return low is not None and (low > 0 or high < 0)

    def to_dict(self) -> dict[str, Any]:
        return {"run_a": self.run_a, "run_b": self.run_b, **self.paired, "excludes_zero": self.excludes_zero,
                "differences": self.differences, "largest_changes": self.largest_changes}


def compare(run_a: str | Path, run_b: str | Path, *, n_bootstrap: int = 1000, seed: int = 0, top: int = 5) -> Comparison:
    """Paired comparison of two runs (folders or ``scores.npz`` files) on the same test set."""
    run_a, run_b = str(run_a), str(run_b)
    if n_bootstrap < 1:
        raise UserError("n_bootstrap must be at least 1")
    scores_a, scores_b, labels = aligned(run_a, run_b)
    paired = paired_bootstrap(scores_a, scores_b, labels, n_bootstrap, seed)
    record_a, record_b = read_record(run_a), read_record(run_b)
    found = differences(record_a, record_b) if record_a and record_b else None
    changed = sorted((c for c, diff in enumerate(paired["per_class_ap_diff"]) if diff),
                     key=lambda c: -abs(paired["per_class_ap_diff"][c]))
    names = record_b.dataset.classes if record_b else [str(c) for c in range(labels.shape[1])]
    largest = [{"class": c, "name": names[c], "ap_a": paired["per_class_ap_a"][c], "ap_b": paired["per_class_ap_b"][c],
                "diff": paired["per_class_ap_diff"][c]} for c in changed[:top]]
    return Comparison(run_a, run_b, paired, found, largest)
