"""``bench leaderboard reproduce``: train a stored submission again and compare it.

The resolved run is rebuilt from the bundle in a scratch folder. The only plugin code it
imports is code stored in the bundle, checked by sha256 (file and directory plugins, copied
into the scratch folder), and plugin distributions installed here, which must be the
recorded distribution and version; a run that loaded a plugin as a bare module is refused,
since its code is in neither place. That code is the submitter's and runs with this user's
rights: review it (it lies under ``submissions/plugins/``) and reproduce in a sandbox or a
container. torch uses the recorded number of threads (a CPU's floating-point sums depend on
how the work is split; a count of threads above this machine's cores is refused on a CPU
and capped on a GPU, where the sums are not repeated anyway), and the run trains on the
recorded device type with ``harness.runner.train_resolved``. Then:

- The re-trained ``RunRecord`` must equal the submitted result in every field but those
  that say when, how fast and where it ran (``UNCOMPARED``, paths, the code hashes of
  built-in and distribution plugins, which are listed as ``code_changed`` instead): a
  claimed backbone, GPU, coverage or pipeline that training does not give is a mismatch,
  named by its first differing field.
- The scores are compared with the stored ones image by image, aligned by id (first
  converted as ``submit`` converted the submission's: ``reproduced_scores``). On a CPU the
  same code, data, seed and thread count give the same bits: the scores must be
  bit-identical. On a GPU, atomic additions in cuDNN and cuBLAS make sums
  non-deterministic, and forty epochs turn the first differences into different weights.
  The scores then need only agree in their metrics: every paper column within
  ``TOLERANCE_FRACTION`` (½) of the seed standard deviation pooled over the multi-seed
  rows of verified submissions of the same data and protocol, and never more than
  ``TOLERANCE_CAP``. A difference that small moves the mean of an n-seed row by at most
  σ/(2n), under 0.36 σ/√n (its standard error) for every n ≥ 2: less than the row's own ±
  already says. (leaderboards/README.md gives the reasoning in full.)

Success with ``--sign KEY`` writes ``<stem>.verified.json`` beside the submission, signed by
that maintainer's SSH key (``signing``: only a signature by a key in ``allowed_signers`` makes
rows ``verified``); without a key nothing is written. A mismatch returns an
``Outcome`` with ``matches=False`` and the first differing field or the largest score
difference (image, class, values).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from harness import __version__
from harness.alignment import Scored, align_by_id
from harness.config import PluginSource
from harness.errors import UserError
from harness.leaderboard.bundle import Bundle, StoredSource, Verification
from harness.leaderboard.rows import METRICS, configuration
from harness.leaderboard.scratch import remove_abandoned, scratch_folder
from harness.leaderboard.signing import allowed_signers, check_key_listed, read_signed, sign_verification
from harness.leaderboard.store import copy_code, find_bundle, source_path, stored_bundles
from harness.leaderboard.submission_check import check_stored
from harness.metrics import evaluate, from_probabilities
from harness.naming import canonical_json, code_sha256, sha256_json
from harness.machine import cpu_model, environment, usable_cores
from harness.recipes import DEFAULT_RECIPE
from harness.results import RunRecord, fields_with_role
from harness.files import write_json
from harness.rundir import read_scores

TOLERANCE_FRACTION = 0.5
TOLERANCE_CAP = 0.005  # half a percentage point: what no forged spread of seeds can widen a tolerance beyond
# Not compared with the re-trained record: its volatile fields (when and how fast the run
# went) and machine fields (the harness and the machine that ran it: versions, platform, CPU,
# thread count, which the verification records for this machine; every plugin loaded, those
# whose code changed listed in code_changed); and the metrics, which the scores are compared for.
UNCOMPARED = (*fields_with_role("volatile", "machine"), "metrics")
_ABSENT = object()


@dataclass
class Comparison:
    """How reproduced scores differ from the stored ones."""

    largest_difference: float
    image: str | None
    class_name: str | None
    stored: float | None
    reproduced: float | None
    metric_differences: dict[str, float]


@dataclass(kw_only=True)
class Outcome:
    """``matches``: the re-trained record equals the submitted one (``difference`` names the
    first field that does not) and the scores are exact on a CPU, within ``tolerance`` on a
    GPU; ``verification`` is what was written beside the submission when it matches."""

    bundle: Bundle
    matches: bool
    difference: str | None
    comparison: Comparison
    tolerance: dict[str, float] | None
    code_changed: list[str]
    seconds: float
    verification: Verification | None = None

    def message(self) -> str:
        verdict = "matches" if self.matches else "does not match"
        if self.difference:
            return (f"{self.bundle.path}: the re-trained run {verdict} the submission: {self.difference}; the "
                    "submission claims what training it again does not give")
        c = self.comparison
        at = f" at image {c.image!r}, class {c.class_name!r} (stored {c.stored!r}, reproduced {c.reproduced!r})" if c.image else ""
        if self.tolerance is not None:
            worst = max(c.metric_differences, key=lambda k: abs(c.metric_differences[k]) / max(self.tolerance[k], 1e-12))
            tolerance = (f"; {worst} differs by {c.metric_differences[worst]:+.4g}, tolerance ±{self.tolerance[worst]:.4g}"
                         " (½ the pooled seed std of verified rows, at most 0.5 points)")
        else:
            tolerance = "; a CPU run must repeat bit for bit"
        changed = f"; code changed since: {', '.join(self.code_changed)}" if self.code_changed else ""
        return (f"{self.bundle.path}: the re-trained run {verdict} the submission; largest score difference "
                f"{c.largest_difference:.6g}{at}{tolerance}{changed}")


def compare_scores(stored: np.ndarray, stored_ids: np.ndarray, labels: np.ndarray, reproduced: np.ndarray,
                   reproduced_ids: np.ndarray, classes: list[str]) -> tuple[Comparison, bool]:
    """The largest absolute difference (image, class) after aligning by id (``align_by_id``),
    the paper columns' differences (reproduced − stored), and whether the scores are bit-identical."""
    runs = [Scored("the submission", stored_ids, stored), Scored("the re-trained run", reproduced_ids, reproduced)]
    aligned = align_by_id(runs, "it ran on other data")[1]
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


def reproduced_scores(bundle: Bundle, scores: np.ndarray, where: str) -> np.ndarray:
    """The re-trained run's scores (from ``where``) as the submission stored its own: a
    submission whose probabilities were converted (``scores_converted``) gets the same
    conversion, to float32 logits."""
    if bundle.scores_converted != "probabilities":
        return scores
    return from_probabilities(scores, name=f"{where} (the re-trained run's scores, converted from probabilities as "
                                           f"{bundle.path.name}'s were)").astype(np.float32)


def _plugin(plugin: dict) -> dict:
    """A plugin as a re-trained run can repeat it: a file or directory plugin by its code's
    sha256 (its path and the name it was given are the submitter's), any other by name,
    distribution and version (a changed code hash is listed in code_changed)."""
    if plugin["source"] in ("file", "directory"):
        return {"source": plugin["source"], "sha256": plugin["sha256"]}
    return {key: plugin[key] for key in ("name", "source", "distribution", "distribution_version")}


def comparable(record: RunRecord) -> dict[str, Any]:
    """A train record's fields as a re-trained run must repeat them: without ``UNCOMPARED``,
    the device as its type, plugins as ``_plugin`` gives them, weights files without their path."""
    data = {key: value for key, value in record.to_dict().items() if key not in UNCOMPARED}
    data["device"] = data["device"].split(":")[0]
    for part in ("dataset", "model", "augmentation", "loss"):
        data[part]["plugin"] = _plugin(data[part]["plugin"])
    for weights in data["model"]["pretrained"]["files"]:
        del weights["file"]
    for deviation in ("loss", "recipe"):
        found = data["protocol"]["deviations"].get(deviation)
        if found is not None:
            found["plugin"] = _plugin(found["plugin"])
    recipe = data["recipe"]
    if recipe is not None:
        recipe["plugin"] = _plugin(recipe["plugin"])
        if recipe["name"] == DEFAULT_RECIPE and recipe["plugin"]["source"] == "built-in" and recipe["ema_decay"] is None:
            data["recipe"] = None  # a record written before recipes trained with the built-in sgd-step too
    return data


def _difference(stored: Any, again: Any, key: str) -> str | None:
    if isinstance(stored, dict) and isinstance(again, dict):
        for name in [*stored, *(k for k in again if k not in stored)]:
            found = _difference(stored.get(name, _ABSENT), again.get(name, _ABSENT), f"{key}.{name}")
            if found:
                return found
        return None
    if isinstance(stored, list) and isinstance(again, list) and len(stored) == len(again):
        return next((d for i, (a, b) in enumerate(zip(stored, again)) if (d := _difference(a, b, f"{key}[{i}]"))), None)
    if stored == again:
        return None
    shown = ["absent" if value is _ABSENT else repr(value) for value in (stored, again)]
    return f"{key} is {shown[0]} in the submission but {shown[1]} in the re-trained run"


def record_difference(stored: RunRecord, again: RunRecord) -> str | None:
    """The first field (``result.model.backbone``) in which the re-trained record differs from
    the submitted one, as ``comparable`` gives them; None when none does."""
    return _difference(comparable(stored), comparable(again), "result")


def gpu_tolerance(bundle: Bundle, bundles: list[Bundle]) -> dict[str, float]:
    """½ the seed standard deviation of each paper column, pooled over every configuration of
    the same data and protocol with two or more verified seeds (the submission itself left
    out), and at most ``TOLERANCE_CAP``: a self-reported submission never widens it."""
    target = bundle.record
    groups: dict[str, list[dict[str, Any]]] = {}
    for other in bundles:
        record = other.record
        if (other.id == bundle.id or record.kind != "train" or record.dataset.fingerprint != target.dataset.fingerprint
                or record.protocol.hash != target.protocol.hash or read_signed(other) is None):
            continue
        groups.setdefault(canonical_json(configuration(record)), []).append(record.metrics)
    samples = [group for group in groups.values() if len(group) >= 2]
    freedom = sum(len(group) - 1 for group in samples)
    if not freedom:
        raise UserError(f"{bundle.path}: a GPU run repeats only up to its non-deterministic sums, and the tolerance "
                        "comes from the seed variance of verified multi-seed rows of "
                        f"{target.dataset.name}/{target.protocol.name}; there is none yet: verify two seeds of one "
                        "configuration first (a CPU run is verified exactly, without a tolerance)")
    tolerance = {}
    for key, _ in METRICS:
        squares = sum((len(g) - 1) * float(np.var([m[key] for m in g], ddof=1)) for g in samples)
        tolerance[key] = min(TOLERANCE_FRACTION * math.sqrt(squares / freedom), TOLERANCE_CAP)
    return tolerance


def _scratch_plugins(bundle: Bundle, root: Path, scratch: Path) -> list[PluginSource]:
    """The run's plugins as reproduce loads them: file and directory plugins copied from the
    bundle's stored code into ``scratch`` (the copy's sha256 checked); distribution and
    built-in plugins as recorded (loaded from their installed entry points, never by the
    recorded value); a module plugin, whose code the bundle does not hold, is refused."""
    values = []
    for index, source in enumerate(bundle.resolved.plugins):
        kind = source.plugin.source
        if kind == "module":
            raise UserError(f"{bundle.path} (run): plugins[{index}] is module {source.value!r}, whose code the bundle "
                            "does not hold; reproduce runs only code stored in the bundle or installed plugin "
                            "distributions: train again with the plugin as a file, a folder or a distribution")
        if kind not in ("file", "directory"):
            values.append(source)
            continue
        stored = StoredSource(kind=kind, sha256=str(source.plugin.sha256))
        original = source_path(root, stored)
        copy = scratch / "plugins" / original.name
        copy.parent.mkdir(parents=True, exist_ok=True)
        if code_sha256(original, kind) is not None:
            copy_code(original, copy, kind)
        if code_sha256(copy, kind) != stored.sha256:
            raise UserError(f"{original}: missing, or not the code of sha256 {stored.sha256[:12]}… the run used; restore "
                            "it from version control")
        values.append(PluginSource(value=str(copy), plugin=dataclasses.replace(source.plugin, path=str(copy))))
    return values


def _code_changed(record: RunRecord, registry) -> list[str]:
    """Every plugin the run loaded whose code hash is another here, or that is not loaded here."""
    loaded = {(p.name, p.source): p for p in registry.plugins if not p.error}
    changed = []
    for plugin in record.plugins:
        if plugin.source in ("file", "directory"):
            now = next((p for p in registry.plugins if p.source == plugin.source and p.sha256 == plugin.sha256), None)
        else:
            now = loaded.get((plugin.name, plugin.source))
        if now is None:
            changed.append(f"{plugin.name} (not loaded)")
        elif now.code_sha256 != plugin.sha256:
            changed.append(f"{plugin.name} {str(plugin.sha256)[:8]}→{str(now.code_sha256)[:8]}")
    return changed


def _threads(bundle: Bundle, device: str) -> int:
    """The recorded torch thread count, which a CPU run needs to repeat its sums: at least 1
    and, on a CPU, at most this machine's cores (refused above); capped there on a GPU."""
    threads = bundle.record.environment.get("torch_threads")
    cores = usable_cores()
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise UserError(f"{bundle.path}: result.environment.torch_threads is {threads!r}; the thread count (a whole "
                        "number, at least 1) is needed to repeat a run's sums")
    if threads > cores and device == "cpu":
        raise UserError(f"{bundle.path}: result.environment.torch_threads is {threads}, more than the {cores} cores "
                        f"here; a CPU run repeats its sums only with its own thread count: reproduce it on a machine "
                        f"with {threads} cores or more")
    return min(threads, cores)


def reproduce(submission: str, root: Path, data_root: str | None = None, sign: Path | None = None) -> Outcome:
    """Train stored submission ``submission`` (its file or id under ``root``) again and compare.
    On a match with ``sign`` (an SSH key listed in ``root/allowed_signers``, checked before
    training) the verification is signed and written beside the submission; without it, it is
    only returned. Refusals are one ``UserError``."""
    import torch

    from harness.registry import Registry
    from harness.runner import check_distribution_versions, train_resolved

    started = time.perf_counter()
    remove_abandoned()
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
    threads = _threads(bundle, device)
    if sign is not None:
        check_key_listed(sign, allowed_signers(root))
    tolerance = gpu_tolerance(bundle, bundles) if device == "cuda" else None
    previous_threads = torch.get_num_threads()
    with scratch_folder() as scratch:
        plugins = _scratch_plugins(bundle, root, scratch)
        resolved = dataclasses.replace(
            bundle.resolved, out=str(scratch / "runs"), plugins=plugins, device=device, precision=record.precision,
            loggers=[],  # a reproduction sends the submitter's curves nowhere
            data_root=str(Path(data_root).expanduser().resolve()) if data_root else bundle.resolved.data_root,
        )
        resolved.check_plugin_files()
        registry = Registry(tuple(p.value for p in plugins if p.plugin.source in ("file", "directory")), watch_torch=True)
        registry.check_requested()
        registry.check_core_unchanged()
        used = [c.plugin for c in (record.model, record.augmentation, record.loss, record.dataset, record.recipe) if c]
        check_distribution_versions([p.plugin for p in plugins] + used, registry, "reproduce the run")
        code_changed = _code_changed(record, registry)
        torch.set_num_threads(threads)
        try:
            again = train_resolved(resolved, registry)
        finally:
            torch.set_num_threads(previous_threads)
        reproduced, _, reproduced_ids = read_scores(again.path)
        reproduced = reproduced_scores(bundle, reproduced, str(again.path / "scores.npz"))
    stored, labels, ids = bundle.scores()
    comparison, identical = compare_scores(stored, ids, labels, reproduced, np.asarray([str(i) for i in reproduced_ids]),
                                           list(record.dataset.classes))
    difference = record_difference(record, again)
    if tolerance is None:
        scores_match = identical
    else:
        scores_match = all(abs(comparison.metric_differences[k]) <= tolerance[k] for k in tolerance)
    outcome = Outcome(bundle=bundle, matches=difference is None and scores_match, difference=difference,
                      comparison=comparison, tolerance=tolerance, code_changed=code_changed,
                      seconds=time.perf_counter() - started)
    if outcome.matches:
        outcome.verification = _write_verification(outcome, identical, device, threads, root, sign)
    return outcome


def _write_verification(outcome: Outcome, identical: bool, device: str, threads: int, root: Path,
                        sign: Path | None) -> Verification:
    here = environment()
    comparison = outcome.comparison
    bundle = outcome.bundle
    verification = Verification(
        submission=bundle.id,
        content_sha256=bundle.content_sha256,
        result_sha256=sha256_json(bundle.result),
        scores_sha256=bundle.scores_sha256,
        verified=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        outcome="exact" if identical else "within tolerance",
        largest_difference=comparison.largest_difference,
        at={"image": comparison.image, "class": comparison.class_name} if comparison.image else None,
        tolerance=outcome.tolerance,
        harness_version=__version__,
        git_commit=here["git_commit"],
        hardware={"device": device, "cpu": cpu_model(), "gpu": here["gpu"] if device == "cuda" else None,
                  "torch_threads": threads, "cores": usable_cores()},
        versions=here["versions"],
        seconds=round(outcome.seconds, 1),
        code_changed=outcome.code_changed,
    )
    if sign is None:
        return verification
    signed = sign_verification(dataclasses.asdict(verification), sign, allowed_signers(root), str(bundle.verification_path))
    write_json(bundle.verification_path, signed)
    return dataclasses.replace(verification, signature=signed["signature"])
