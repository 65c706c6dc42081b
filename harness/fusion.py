"""Score-level fusion of finished runs into a new run folder (paper §3.3, PROTOCOL.md).

Members must have been scored on the same test split of the same data under the same
protocol; their scores are aligned by image id (the order in each ``scores.npz`` may
differ), fused by a fusion plugin, and scored with the metrics engine. The fused run folder
has the format of any other run, with ``kind: "fusion"`` and the list of its members.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from harness.alignment import Scored, align_by_id
from harness.errors import PluginError, UserError
from harness.metrics import evaluate
from harness.naming import fusion_run_id, plain_name, sha256_of
from harness.results import TRAINING_FACTS, FusionRecord, MemberRecord, RunRecord
from harness.files import atomic_write
from harness.rundir import RESULT_FILE, SCORES_FILE, claim, publish, read_scores, run_lock, write_scores

# Training facts copied from the members when they all agree, else recorded as null.
SHARED_FIELDS = TRAINING_FACTS


@dataclass
class Member:
    """One finished run read from its folder."""

    path: Path
    record: RunRecord
    scores: np.ndarray
    labels: np.ndarray
    ids: np.ndarray

    @classmethod
    def load(cls, run_dir: Path) -> "Member":
        run_dir = Path(run_dir)
        record = RunRecord.read(run_dir)
        scores, labels, ids = read_scores(run_dir)
        return cls(run_dir, record, scores, labels, np.asarray([str(i) for i in ids]))

    def leaves(self) -> list[dict[str, Any]]:
        """The trained runs behind this one: itself, or the members of a fusion run."""
        if self.record.kind == "fusion":
            return [{"model": m.model, "augmentation": m.augmentation, "size": m.size, "seed": m.seed}
                    for m in self.record.members or []]
        return [{"model": self.record.model.name, "augmentation": self.record.augmentation.name,
                 "size": self.record.size, "seed": self.record.seed}]


def _check_agree(members: Sequence[Member], value, what: str, hint: str) -> None:
    first = members[0]
    for other in members[1:]:
        if value(first.record) != value(other.record):
            raise UserError(
                f"runs {first.path} and {other.path} have different {what} "
                f"({value(first.record)!r} vs {value(other.record)!r}); {hint}"
            )


def align(members: Sequence[Member]) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """The first member's ids and labels, and every member's scores in that id order
    (``align_by_id``, which refuses members scored on different test sets in one line)."""
    scored = [Scored(str(m.path), m.ids, m.scores, m.labels) for m in members]
    return members[0].ids, members[0].labels, align_by_id(scored, "fuse only runs scored on the same test split")


def fuse_runs(
    run_dirs: Sequence[Path],
    out_dir: Path,
    fusion_component,
    name: str | None = None,
    *,
    run_id: str | None = None,
    overwrite: bool = False,
) -> RunRecord:
    """Fuse finished runs with ``fusion_component`` (a registry ``Component``) into
    ``out_dir/<run-id>/``; returns the fused run's record (``record.path`` is the folder).

    ``name`` labels the ensemble (``ScaleEn``, ``DistrEn``) on leaderboards and in the run
    id; without it the fusion's name is used. The fused scores are stored as float32 and
    the metrics are computed from exactly those stored values, so a re-score reproduces them.
    """
    started = time.perf_counter()
    if len(run_dirs) < 2:
        raise UserError("give at least two run folders to fuse")
    resolved = [Path(p).resolve() for p in run_dirs]
    if len(set(resolved)) != len(resolved):
        raise UserError("the same run folder is given twice; each member must be a different run")
    members = [Member.load(p) for p in run_dirs]
    _check_agree(members, lambda r: r.dataset.fingerprint, "dataset fingerprints", "fuse only runs scored on the same data")
    _check_agree(members, lambda r: r.protocol.hash, "protocol hashes", "fuse only runs trained under the same protocol")
    _check_agree(members, lambda r: r.protocol.deviations, "protocol deviations",
                 "fuse only runs trained with the same deviations")
    ids, labels, scores = align(members)

    spec = fusion_component.spec
    fused = np.asarray(fusion_component.call("fuse", spec.fuse, scores))
    if fused.shape != labels.shape or not np.isfinite(fused).all():
        raise PluginError(
            f"{fusion_component.label} returned "
            f"{'shape ' + str(fused.shape) if fused.shape != labels.shape else 'non-finite scores'}; "
            f"it must return finite N×C logits of shape {labels.shape}"
        )
    fused = fused.astype(np.float32)

    label = plain_name(name or spec.name, "--name")
    first = members[0].record
    if run_id is None:
        leaves = [leaf for m in members for leaf in m.leaves()]
        run_id = fusion_run_id(
            first.dataset.name,
            [leaf.get("model") or "none" for leaf in leaves],
            [leaf.get("augmentation") or "none" for leaf in leaves],
            [leaf.get("size") or 0 for leaf in leaves],
            first.protocol.name,
            [leaf.get("seed") or 0 for leaf in leaves],
            label,
        )
    run_dir = Path(out_dir).expanduser().resolve() / plain_name(run_id, "--run-id")
    with run_lock(run_dir):
        folder = claim(run_dir, overwrite=overwrite, resume=False)
        write_scores(folder / SCORES_FILE, fused, labels, ids)
        record = RunRecord.for_fusion(
            [m.record for m in members],
            run_id=run_id,
            metrics=evaluate(fused, labels),
            fusion=FusionRecord(**vars(fusion_component.provenance()), label=label),
            member_records=[
                MemberRecord(
                    run_id=m.record.run_id,
                    path=os.path.relpath(m.path.resolve(), run_dir),
                    kind=m.record.kind,
                    model=m.record.model.name if m.record.model else None,
                    augmentation=m.record.augmentation.name if m.record.augmentation else None,
                    size=m.record.size,
                    seed=m.record.seed,
                    scores_sha256=sha256_of(m.path / SCORES_FILE),
                )
                for m in members
            ],
            wall_time_s=round(time.perf_counter() - started, 3),
        )
        atomic_write(folder / RESULT_FILE, lambda stream: stream.write(record.to_json().encode()))
        publish(folder, run_dir)
    record.path = run_dir
    return record


def fuse(run_dirs: Sequence[Path | str], *, name: str | None = None, method: str = "mean", out: Path | str = "runs",
         run_id: str | None = None, overwrite: bool = False, plugins: Sequence[str] = ()) -> RunRecord:
    """``bench fuse`` as a function: fuse finished run folders with fusion ``method`` under the
    ensemble label ``name``; returns the fused run's ``RunRecord``."""
    from harness.registry import Registry

    component = Registry(tuple(plugins)).get("fusion", method)
    return fuse_runs([Path(p) for p in run_dirs], Path(out), component, name, run_id=run_id, overwrite=overwrite)
