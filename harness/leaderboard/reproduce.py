"""``bench leaderboard reproduce``: train a stored submission again and compare its scores.

The resolved run is rebuilt from the bundle in a scratch folder: file and directory plugins
are written there from ``submissions/plugins/`` (their sha256 checked), installed plugin
distributions must have the recorded versions, torch uses the recorded number of threads
(a CPU's floating-point sums depend on how the work is split) and the run trains on the
recorded device type with ``harness.runner.train_resolved``. The scores are compared with
the stored ones image by image, aligned by id.

- On a CPU the same code, data, seed and thread count give the same bits: the scores must
  be bit-identical.
- On a GPU, atomic additions in cuDNN and cuBLAS make sums non-deterministic, and forty
  epochs turn the first differences into different weights. The scores then need only
  agree in their metrics: every paper column within ``TOLERANCE_FRACTION`` (½) of the seed
  standard deviation pooled over the multi-seed rows of the same data and protocol. A
  difference that small moves the mean of an n-seed row by at most σ/(2n), under
  0.36 σ/√n (its standard error) for every n ≥ 2: less than the row's own ± already says.
  (leaderboards/README.md gives the reasoning in full.)

Success writes ``<stem>.verified.json`` beside the submission; a mismatch returns an
``Outcome`` with ``matches=False`` and the largest difference (image, class, values).
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from harness import __version__
from harness.config import PluginSource
from harness.errors import UserError
from harness.leaderboard.build import check_stored
from harness.leaderboard.bundle import (
    Bundle,
    StoredSource,
    Verification,
    code_sha256,
    find_bundle,
    source_path,
    stored_bundles,
)
from harness.leaderboard.packed_scores import read_packed
from harness.leaderboard.rows import METRICS, configuration
from harness.metrics import evaluate
from harness.naming import canonical_json
from harness.results import RunRecord, cpu_model, environment
from harness.rundir import read_scores, write_json

TOLERANCE_FRACTION = 0.5


@dataclass
class Comparison:
    """How reproduced scores differ from the stored ones."""

    largest_difference: float
    image: str | None
    class_name: str | None
    stored: float | None
    reproduced: float | None
    metric_differences: dict[str, float]


@dataclass
class Outcome:
    """``matches``: exact on a CPU, within ``tolerance`` on a GPU; ``verification`` is what was
    written beside the submission when it matches."""

    bundle: Bundle
    matches: bool
    comparison: Comparison
    tolerance: dict[str, float] | None
    code_changed: list[str]
    seconds: float
    verification: Verification | None

    def message(self) -> str:
        c = self.comparison
        at = f" at image {c.image!r}, class {c.class_name!r} (stored {c.stored!r}, reproduced {c.reproduced!r})" if c.image else ""
        if self.tolerance is not None:
            worst = max(c.metric_differences, key=lambda k: abs(c.metric_differences[k]) / max(self.tolerance[k], 1e-12))
            tolerance = (f"; {worst} differs by {c.metric_differences[worst]:+.4g}, tolerance ±{self.tolerance[worst]:.4g}"
                         " (½ the pooled seed std)")
        else:
            tolerance = "; a CPU run must repeat bit for bit"
        changed = f"; code changed since: {', '.join(self.code_changed)}" if self.code_changed else ""
        verdict = "matches" if self.matches else "does not match"
        return (f"{self.bundle.path}: the re-trained run {verdict} the submission; largest score difference "
                f"{c.largest_difference:.6g}{at}{tolerance}{changed}")


def compare_scores(stored: np.ndarray, stored_ids: np.ndarray, labels: np.ndarray, reproduced: np.ndarray,
                   reproduced_ids: np.ndarray, classes: list[str]) -> tuple[Comparison, bool]:
    """The largest absolute difference (image, class) after aligning by id, the paper columns'
    differences (reproduced − stored), and whether the scores are bit-identical."""
    position = {image_id: i for i, image_id in enumerate(reproduced_ids.tolist())}
    missing = next((i for i in stored_ids.tolist() if i not in position), None)
    if missing is not None or len(position) != len(stored_ids):
        raise UserError(f"the re-trained run scored other test images than the submission (first: {missing!r}); "
                        "it ran on other data")
    aligned = reproduced[[position[i] for i in stored_ids.tolist()]]
    identical = bool(np.array_equal(aligned.view(np.uint32), np.ascontiguousarray(stored, dtype=np.float32).view(np.uint32)))
    difference = np.abs(aligned.astype(np.float64) - stored.astype(np.float64))
    if identical or difference.size == 0:
        image, column, largest = None, None, 0.0
    else:
        row, column = np.unravel_index(int(np.argmax(difference)), difference.shape)
        image, largest = str(stored_ids[row]), float(difference[row, column])
    before, after = evaluate(stored, labels), evaluate(aligned, labels)
    comparison = Comparison(
        largest_difference=largest, image=image, class_name=None if column is None else classes[column],
        stored=None if image is None else float(stored[row, column]),
        reproduced=None if image is None else float(aligned[row, column]),
        metric_differences={key: after[key] - before[key] for key, _ in METRICS},
    )
    return comparison, identical


def gpu_tolerance(bundle: Bundle, bundles: list[Bundle]) -> dict[str, float]:
    """½ the seed standard deviation of each paper column, pooled over every configuration of
    the same data and protocol with two or more seeds (the submission itself left out)."""
    target = bundle.record
    groups: dict[str, list[dict[str, Any]]] = {}
    for other in bundles:
        record = other.record
        if (other.id == bundle.id or record.kind != "train" or record.dataset.fingerprint != target.dataset.fingerprint
                or record.protocol.hash != target.protocol.hash):
            continue
        groups.setdefault(canonical_json(configuration(record)), []).append(record.metrics)
    samples = [group for group in groups.values() if len(group) >= 2]
    freedom = sum(len(group) - 1 for group in samples)
    if not freedom:
        raise UserError(f"{bundle.path}: a GPU run repeats only up to its non-deterministic sums, and the tolerance "
                        f"comes from the seed variance of multi-seed rows of {target.dataset.name}/{target.protocol.name}; "
                        "there is none yet: submit a second seed of a configuration first")
    tolerance = {}
    for key, _ in METRICS:
        squares = sum((len(g) - 1) * float(np.var([m[key] for m in g], ddof=1)) for g in samples)
        tolerance[key] = TOLERANCE_FRACTION * math.sqrt(squares / freedom)
    return tolerance


def _scratch_plugins(bundle: Bundle, root: Path, scratch: Path) -> list[PluginSource]:
    """The run's plugin values with file and directory plugins copied from the bundle's stored
    code into ``scratch`` (each copy's sha256 checked)."""
    values = []
    for source in bundle.resolved.plugins:
        kind = source.plugin.source
        if kind not in ("file", "directory"):
            values.append(source)
            continue
        stored = StoredSource(kind=kind, sha256=str(source.plugin.sha256))
        if stored not in bundle.sources:
            raise UserError(f"{bundle.path}: run.plugins names {kind} plugin sha256 {stored.sha256[:12]}…, which the "
                            "bundle's sources do not hold")
        original = source_path(root, stored)
        copy = scratch / "plugins" / original.name
        copy.parent.mkdir(parents=True, exist_ok=True)
        if kind == "file" and original.is_file():
            shutil.copyfile(original, copy)
        elif kind == "directory" and original.is_dir():
            shutil.copytree(original, copy, ignore=shutil.ignore_patterns("__pycache__"))
        if code_sha256(copy, kind) != stored.sha256:
            raise UserError(f"{original}: missing, or not the code of sha256 {stored.sha256[:12]}… the run used; restore "
                            "it from version control")
        values.append(PluginSource(value=str(copy), plugin=dataclasses.replace(source.plugin, path=str(copy))))
    return values


def _check_plugins(record: RunRecord, registry) -> list[str]:
    """Refuse a plugin distribution that provided a component of the run unless the recorded
    version is installed; return every plugin whose code hash changed (or that is gone)."""
    loaded = {(p.name, p.source): p for p in registry.plugins if not p.error}
    used = {(c.plugin.name, c.plugin.source) for c in (record.model, record.augmentation, record.loss)}
    used.add((record.dataset.plugin.name, record.dataset.plugin.source))
    changed = []
    for plugin in record.plugins:
        now = loaded.get((plugin.name, plugin.source))
        if plugin.source in ("file", "directory"):
            now = next((p for p in registry.plugins if p.source == plugin.source and p.sha256 == plugin.sha256), now)
        if plugin.source == "distribution" and (plugin.name, plugin.source) in used and (
                now is None or now.distribution_version != plugin.distribution_version):
            found = f"{now.distribution_version} is installed" if now else "it is not installed"
            raise UserError(f"plugin {plugin.name!r} provided part of the run from {plugin.distribution} "
                            f"{plugin.distribution_version}, but {found}; install that version to reproduce the run")
        if now is None:
            changed.append(f"{plugin.name} (not loaded)")
        elif now.code_sha256 != plugin.sha256:
            changed.append(f"{plugin.name} {str(plugin.sha256)[:8]}→{str(now.code_sha256)[:8]}")
    return changed


def reproduce(submission: str, root: Path, data_root: str | None = None) -> Outcome:
    """Train stored submission ``submission`` (its file or id under ``root``) again and compare;
    writes the verification beside it when the scores match. Refusals are one ``UserError``."""
    import torch

    from harness.registry import Registry
    from harness.runner import train_resolved

    started = time.perf_counter()
    root = Path(root)
    bundle = find_bundle(root, submission)
    bundles = stored_bundles(root)
    registry = Registry()
    check_stored(bundle, {b.id: b for b in bundles}, root, registry)
    record = bundle.record
    if record.kind == "fusion":
        raise UserError(f"{bundle.path}: a fusion is verified through its members; reproduce {', '.join(bundle.members)}")
    device = record.device.split(":")[0]
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{bundle.path}: trained on {record.gpu or 'a GPU'} ({record.device}), and this machine has no "
                        "CUDA device; reproduce it on one")
    if record.world_size != 1:
        raise UserError(f"{bundle.path}: trained on {record.world_size} processes; reproduce trains in one")
    threads = record.environment.get("torch_threads")
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise UserError(f"{bundle.path}: result.environment.torch_threads is {threads!r}; the thread count is needed "
                        "to repeat a run's sums")
    tolerance = gpu_tolerance(bundle, bundles) if device == "cuda" else None
    previous_threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="bench-reproduce-") as scratch:
        scratch = Path(scratch)
        plugins = _scratch_plugins(bundle, root, scratch)
        resolved = dataclasses.replace(
            bundle.resolved, out=str(scratch / "runs"), plugins=plugins, device=device, precision=record.precision,
            data_root=str(Path(data_root).expanduser().resolve()) if data_root else bundle.resolved.data_root,
        )
        resolved.check_plugin_files()
        registry = Registry(tuple(p.value for p in plugins))
        registry.check_requested()
        registry.check_core_unchanged()
        code_changed = _check_plugins(record, registry)
        torch.set_num_threads(threads)
        try:
            again = train_resolved(resolved, registry)
        finally:
            torch.set_num_threads(previous_threads)
        reproduced, _, reproduced_ids = read_scores(again.path)
    stored, labels, ids = read_packed(bundle.scores_path)
    comparison, identical = compare_scores(stored, ids, labels, reproduced, np.asarray([str(i) for i in reproduced_ids]),
                                           list(record.dataset.classes))
    if tolerance is None:
        matches = identical
    else:
        matches = all(abs(comparison.metric_differences[k]) <= tolerance[k] for k in tolerance)
    seconds = time.perf_counter() - started
    outcome = Outcome(bundle, matches, comparison, tolerance, code_changed, seconds, None)
    if matches:
        outcome.verification = _write_verification(outcome, identical, device)
    return outcome


def _write_verification(outcome: Outcome, identical: bool, device: str) -> Verification:
    here = environment()
    comparison = outcome.comparison
    verification = Verification(
        submission=outcome.bundle.id,
        content_sha256=outcome.bundle.content_sha256,
        verified=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        outcome="exact" if identical else "within tolerance",
        largest_difference=comparison.largest_difference,
        at={"image": comparison.image, "class": comparison.class_name} if comparison.image else None,
        tolerance=outcome.tolerance,
        harness_version=__version__,
        git_commit=here["git_commit"],
        hardware={"device": device, "cpu": cpu_model(), "gpu": here["gpu"] if device == "cuda" else None,
                  "torch_threads": outcome.bundle.record.environment["torch_threads"],
                  "cores": os.cpu_count()},
        versions=here["versions"],
        seconds=round(outcome.seconds, 1),
        code_changed=outcome.code_changed,
    )
    write_json(outcome.bundle.verification_path, dataclasses.asdict(verification))
    return verification
