"""Comparing runs (``harness.compare``, ``bench compare``): one run or several seeds per side,
the difference of their mean mAP and paper columns with a two-level bootstrap interval (seeds,
then test images, paired on images), the probability of improvement, and every way their
training differed, the seed included.

``compare(A, B)`` refuses runs scored on different test sets (other ids, or other labels
for the same ids): a difference in mAP between them measures the data, not the method. For
runs whose ``result.json`` is at hand it lists every difference in protocol, epochs, batch
size, input size, augmentation, loss, recipe, model, backbone, initialisation, precision and
dataset fingerprint, so that a 2-epoch baseline is never silently compared with a 40-epoch
method.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.alignment import Scored, align_by_id
from harness.declared import declared_facts
from harness.errors import BadInput, UserError
from harness.metrics import two_level_bootstrap, validate
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


def aligned_runs(runs: list[str]) -> tuple[list[np.ndarray], np.ndarray]:
    """Scores of every run, reordered to the first run's image ids (``align_by_id``), and their
    shared labels; refuses a run whose ids or labels differ from the first's (a different test set)."""
    loaded = []
    for run in runs:
        scores, labels, ids = load_scored((run,))
        loaded.append(Scored(run, ids, scores, labels))
    return align_by_id(loaded, "compare runs on the same test split"), loaded[0].labels


def read_record(path: str) -> RunRecord | None:
    """The record of a run folder (or of the folder holding a ``scores.npz``), if it has one."""
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    if not (folder / RESULT_FILE).is_file():
        return None
    return RunRecord.read(folder, upgrade=True)


def training_facts(record: RunRecord) -> dict[str, Any]:
    """The facts of a run that a fair comparison holds fixed, by name."""
    from harness.protocol import PROTOCOLS
    from harness.recipes import DEFAULT_RECIPE

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
        "recipe": (record.recipe.name if record.recipe else DEFAULT_RECIPE) if record.kind == "train" else None,
        "model": record.model.name if record.model else None,
        "backbone": (record.model.backbone or record.model.name) if record.model else None,
        "init": record.model.pretrained.mode if record.model else None,
        "precision": record.precision,
        "dataset fingerprint": record.dataset.fingerprint,
        "deviations": ", ".join(sorted(deviations)) or "none",
        "seed": record.seed,
        **declared_facts(record),
    }


def differences(a: RunRecord | list[RunRecord], b: RunRecord | list[RunRecord]) -> list[dict[str, Any]]:
    """Every training fact that differs between two runs, or two groups of runs:
    ``{"field", "a", "b"}``, each side one value, or the sorted list of its runs' values
    when they disagree (the seeds of a group, say)."""
    facts_a, facts_b = (_side_facts(side if isinstance(side, list) else [side]) for side in (a, b))
    return [{"field": key, "a": facts_a[key], "b": facts_b[key]} for key in facts_a if facts_a[key] != facts_b[key]]


def _side_facts(records: list[RunRecord]) -> dict[str, Any]:
    facts = [training_facts(record) for record in records]
    side = {}
    for key in facts[0]:
        values = sorted({f[key] for f in facts}, key=lambda value: (value is None, str(value)))
        side[key] = values[0] if len(values) == 1 else values
    return side


SEEDS_NEEDED = 3
"""Runs per side below which ``compare`` does not call a difference significant: one run says
nothing about the variance across seeds (Bouthillier et al., 2021)."""


@dataclass
class Comparison:
    """B − A on the same test images, over one or several runs per side.

    ``paired`` holds ``map_a``, ``map_b`` (means over each side's runs), ``map_diff`` and its
    ``map_diff_interval``, the mean per-class APs and their differences, ``n`` and ``seed``;
    ``columns`` the same for ``map`` and every paper column (``metrics.two_level_bootstrap``);
    ``differences`` what differs in training (``None`` when a run has no result.json)."""

    run_a: str
    run_b: str
    paired: dict[str, Any]
    differences: list[dict[str, Any]] | None
    largest_changes: list[dict[str, Any]] = field(default_factory=list)
    runs_a: list[str] = field(default_factory=list)
    runs_b: list[str] = field(default_factory=list)
    columns: dict[str, dict[str, Any]] = field(default_factory=dict)
    probability_of_improvement: float | None = None

    @property
    def excludes_zero(self) -> bool:
        low, high = self.paired["map_diff_interval"]
        return low is not None and (low > 0 or high < 0)

    @property
    def significant(self) -> bool:
        """Whether the interval excludes 0 with at least two runs on each side."""
        return self.excludes_zero and min(len(self.runs_a), len(self.runs_b)) > 1

    @property
    def verdict(self) -> str:
        """One sentence on what the interval supports."""
        counts = f"{len(self.runs_a)} run(s) of A, {len(self.runs_b)} of B"
        if min(len(self.runs_a), len(self.runs_b)) == 1:
            return (f"Not significant: with {counts} the variance across seeds is unknown, and the interval covers "
                    f"test-image noise only; train at least {SEEDS_NEEDED} seeds of each and compare them all "
                    "(bench compare A1 A2 A3 -- B1 B2 B3).")
        low, high = self.paired["map_diff_interval"]
        if not self.excludes_zero:
            return f"Not significant: the 95% interval of map B − A includes 0 ({counts}, seeds and images resampled)."
        better, worse = ("B", "A") if low > 0 else ("A", "B")
        advice = "" if min(len(self.runs_a), len(self.runs_b)) >= SEEDS_NEEDED else \
            f"; with fewer than {SEEDS_NEEDED} seeds per side the seed variance is a rough estimate"
        return (f"Significant: {better}'s mean map is higher than {worse}'s at the 95% level ({counts}, "
                f"seeds and images resampled{advice}).")

    def __repr__(self) -> str:
        """One line: mAP of B − A in points with its interval, and what differs in training."""
        from harness.notebook import comparison_line

        return comparison_line(self)

    def _repr_html_(self) -> str:
        """A notebook's view: both mAPs, the difference and its interval, the differences, the classes that moved most."""
        from harness.notebook import comparison_html

        return comparison_html(self)

    def to_dict(self) -> dict[str, Any]:
        return {"run_a": self.run_a, "run_b": self.run_b, "runs_a": self.runs_a, "runs_b": self.runs_b,
                **self.paired, "columns": self.columns, "probability_of_improvement": self.probability_of_improvement,
                "excludes_zero": self.excludes_zero, "significant": self.significant, "verdict": self.verdict,
                "differences": self.differences, "largest_changes": self.largest_changes}


def compare(
    run_a: str | Path | Sequence[str | Path],
    run_b: str | Path | Sequence[str | Path],
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
    top: int = 5,
) -> Comparison:
    """Compare run B with run A (folders or ``scores.npz`` files) on the same test set; either
    side may be a list of runs (seeds of one configuration), compared by the two-level
    bootstrap of ``metrics.two_level_bootstrap``."""
    runs_a, runs_b = (_paths(side) for side in (run_a, run_b))
    if n_bootstrap < 1:
        raise UserError("n_bootstrap must be at least 1")
    scores, labels = aligned_runs(runs_a + runs_b)
    result = two_level_bootstrap(scores[: len(runs_a)], scores[len(runs_a):], labels, n_bootstrap, seed)
    records_a, records_b = ([read_record(run) for run in runs] for runs in (runs_a, runs_b))
    known = all(records_a) and all(records_b)
    found = differences(records_a, records_b) if known else None
    map_column = result["columns"]["map"]
    paired = {"map_a": map_column["a"], "map_b": map_column["b"], "map_diff": map_column["diff"],
              "map_diff_interval": map_column["interval"],
              **{key: result[key] for key in ("per_class_ap_a", "per_class_ap_b", "per_class_ap_diff", "n", "seed")}}
    changed = sorted((c for c, diff in enumerate(paired["per_class_ap_diff"]) if diff),
                     key=lambda c: -abs(paired["per_class_ap_diff"][c]))
    names = records_b[0].dataset.classes if records_b[0] else [str(c) for c in range(labels.shape[1])]
    largest = [{"class": c, "name": names[c], "ap_a": paired["per_class_ap_a"][c], "ap_b": paired["per_class_ap_b"][c],
                "diff": paired["per_class_ap_diff"][c]} for c in changed[:top]]
    return Comparison(runs_a[0], runs_b[0], paired, found, largest, runs_a, runs_b, result["columns"],
                      result["probability_of_improvement"])


def _paths(side: str | Path | Sequence[str | Path]) -> list[str]:
    runs = [str(side)] if isinstance(side, (str, Path)) else [str(run) for run in side]
    if not runs:
        raise UserError("compare: a side without runs; give at least one run folder or scores.npz per side")
    return runs
