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
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from harness.errors import PluginError, UserError
from harness.metrics import METRICS_VERSION, evaluate
from harness.results import (
    RESULT_FILE,
    RESULT_SCHEMA_VERSION,
    SCORES_FILE,
    claim_run_dir,
    environment,
    read_result,
    read_scores,
    write_json,
    write_scores,
)
from harness.weights import sha256_of

# Training facts copied from the members when they all agree, else recorded as null.
_SHARED_FIELDS = ("model", "augmentation", "size", "seed", "device", "gpu", "world_size", "precision", "tf32")


def safe_name(name: str) -> str:
    """A component name as it appears in a run id (``:`` is not allowed in file names everywhere)."""
    return str(name).replace(":", "_")


def fusion_run_id(
    dataset: str,
    models: Iterable[str],
    augmentations: Iterable[str],
    sizes: Iterable[int],
    protocol: str,
    seeds: Iterable[int],
    label: str,
) -> str:
    """``{dataset}-{models}-{augs}-{sizes}-{protocol}-seed{seeds}-{label}``, multi-valued parts
    sorted and joined with ``+``, so the id does not depend on the order members are given in."""

    def join(values: Iterable) -> str:
        return "+".join(safe_name(v) for v in sorted(set(values), key=lambda v: (isinstance(v, str), v)))

    return (
        f"{safe_name(dataset)}-{join(models)}-{join(augmentations)}-{join(sizes)}-"
        f"{safe_name(protocol)}-seed{join(seeds)}-{safe_name(label)}"
    )


@dataclass
class Member:
    """One finished run read from its folder."""

    path: Path
    result: dict[str, Any]
    scores: np.ndarray
    labels: np.ndarray
    ids: np.ndarray

    @classmethod
    def load(cls, run_dir: Path) -> "Member":
        run_dir = Path(run_dir)
        result = read_result(run_dir)
        scores, labels, ids = read_scores(run_dir)
        ids = np.asarray([str(i) for i in ids])
        if len(set(ids.tolist())) != len(ids):
            raise UserError(f"{run_dir / SCORES_FILE}: image ids are not unique; cannot align it with other runs")
        return cls(run_dir, result, scores, labels, ids)

    def field(self, *keys: str) -> Any:
        value: Any = self.result
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    def name_of(self, block: str) -> str | None:
        value = self.result.get(block)
        return value.get("name") if isinstance(value, dict) else value

    def leaves(self) -> list[dict[str, Any]]:
        """The trained runs behind this one: itself, or the members of a fusion run."""
        if self.result.get("kind") == "fusion":
            return list(self.result.get("members") or [])
        return [
            {
                "model": self.name_of("model"),
                "augmentation": self.name_of("augmentation"),
                "size": self.result.get("size"),
                "seed": self.result.get("seed"),
            }
        ]


def _check_agree(members: Sequence[Member], keys: tuple[str, ...], what: str, hint: str) -> None:
    first = members[0]
    for other in members[1:]:
        if first.field(*keys) != other.field(*keys):
            raise UserError(
                f"runs {first.path} and {other.path} have different {what} "
                f"({first.field(*keys)!r} vs {other.field(*keys)!r}); {hint}"
            )


def align(members: Sequence[Member]) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """The first member's ids and labels, and every member's scores in that id order.

    Raises a one-line ``UserError`` naming the first id one run lacks, or the first id
    whose labels differ between runs.
    """
    reference = members[0]
    ids = reference.ids
    aligned = []
    for member in members:
        position = {image_id: i for i, image_id in enumerate(member.ids.tolist())}
        missing = next((i for i in ids.tolist() if i not in position), None)
        if missing is not None:
            raise UserError(
                f"run {member.path} lacks test image {missing!r} that {reference.path} has; "
                "fuse only runs scored on the same test split"
            )
        if len(member.ids) != len(ids):
            known = set(ids.tolist())
            extra = next(i for i in member.ids.tolist() if i not in known)
            raise UserError(
                f"run {reference.path} lacks test image {extra!r} that {member.path} has; "
                "fuse only runs scored on the same test split"
            )
        order = np.fromiter((position[i] for i in ids.tolist()), dtype=np.int64, count=len(ids))
        if member.scores.shape[1:] != reference.scores.shape[1:]:
            raise UserError(
                f"runs {reference.path} and {member.path} have {reference.scores.shape[1]} and "
                f"{member.scores.shape[1]} classes; fuse only runs of the same dataset"
            )
        labels = member.labels[order]
        differ = np.flatnonzero((labels != reference.labels).any(axis=1))
        if differ.size:
            raise UserError(
                f"runs {reference.path} and {member.path} disagree on the labels of test image "
                f"{str(ids[differ[0]])!r}; they were scored against different annotations"
            )
        aligned.append(member.scores[order])
    return ids, reference.labels, aligned


def _common(values: list[Any]) -> Any:
    return values[0] if all(v == values[0] for v in values) else None


def fuse_runs(
    run_dirs: Sequence[Path],
    out_dir: Path,
    fusion_component,
    name: str | None = None,
    *,
    run_id: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Fuse finished runs with ``fusion_component`` (a registry ``Component``) and write
    ``out_dir/<run-id>/``; returns that folder.

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
    _check_agree(members, ("dataset", "fingerprint"), "dataset fingerprints", "fuse only runs scored on the same data")
    _check_agree(members, ("protocol", "hash"), "protocol hashes", "fuse only runs trained under the same protocol")
    _check_agree(
        members, ("protocol", "deviations"), "protocol deviations", "fuse only runs trained with the same deviations"
    )
    ids, labels, scores = align(members)

    spec = fusion_component.spec
    fused = np.asarray(spec.fuse(scores))
    if fused.shape != labels.shape or not np.isfinite(fused).all():
        raise PluginError(
            f"fusion {spec.name!r} (plugin {fusion_component.plugin.name!r}) returned "
            f"{'shape ' + str(fused.shape) if fused.shape != labels.shape else 'non-finite scores'}; "
            f"it must return finite N×C logits of shape {labels.shape}"
        )
    fused = fused.astype(np.float32)

    label = name or spec.name
    protocol = members[0].result["protocol"]
    if run_id is None:
        leaves = [leaf for m in members for leaf in m.leaves()]
        run_id = fusion_run_id(
            members[0].result["dataset"]["name"],
            [leaf.get("model") or "none" for leaf in leaves],
            [leaf.get("augmentation") or "none" for leaf in leaves],
            [leaf.get("size") or 0 for leaf in leaves],
            protocol["name"],
            [leaf.get("seed") or 0 for leaf in leaves],
            label,
        )
    run_dir = claim_run_dir(Path(out_dir) / run_id, overwrite=overwrite)
    write_scores(run_dir / SCORES_FILE, fused, labels, ids)
    shared = {key: _common([m.result.get(key) for m in members]) for key in _SHARED_FIELDS}
    record: dict[str, Any] = {
        "schema_version": RESULT_SCHEMA_VERSION,
        "run_id": run_id,
        "kind": "fusion",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "metrics_version": METRICS_VERSION,
        "metrics": evaluate(fused, labels),
        "dataset": members[0].result["dataset"],
        "model": shared.pop("model"),
        "augmentation": shared.pop("augmentation"),
        "size": shared.pop("size"),
        "protocol": protocol,
        **shared,
        "environment": environment(),
        "wall_time_s": None,
        "train_images_per_s": None,
        "eval_images_per_s": None,
        "fusion": {**fusion_component.provenance(), "label": label},
        "members": [
            {
                "run_id": m.result.get("run_id"),
                "path": os.path.relpath(m.path.resolve(), run_dir.resolve()),
                "kind": m.result.get("kind"),
                "model": m.name_of("model"),
                "augmentation": m.name_of("augmentation"),
                "size": m.result.get("size"),
                "seed": m.result.get("seed"),
                "scores_sha256": sha256_of(m.path / SCORES_FILE),
            }
            for m in members
        ],
    }
    record["wall_time_s"] = round(time.perf_counter() - started, 3)
    write_json(run_dir / RESULT_FILE, record)
    return run_dir
