"""What a submission must prove, as checks that refuse in one line naming the file and field.

Each check is a function of what a run folder holds (``result.json``, ``scores.npz``,
``run.json``, ``log.json``) and of the harness's own definitions (protocols, metrics,
fingerprints). ``submit`` runs them on a run folder and ``build`` again on every stored
bundle, both through ``submission_check.check_submission``, so a bundle added by hand must
pass the same checks. Counts, fractions and timings
must lie in their ranges, and the result must agree with ``run.json`` on every setting
both record.

The deviations are recomputed, not read: from the resolved configuration (epochs, batch
size, size, loss), from the weights files the model recorded (init) and from the log (one
entry per epoch trained, each with the protocol's learning rates for that epoch); the
record must list exactly those.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness import recipes
from harness.config import ResolvedRun
from harness.data import compose, split_hash
from harness.errors import UserError
from harness.leaderboard.bundle import EpochLog
from harness.metrics import METRICS_VERSION, evaluate
from harness.naming import plain_name
from harness.protocol import PROTOCOLS, Protocol, protocol_by_hash
from harness.results import RunRecord
from harness.weights import init_used

RESCORE_TOLERANCE = 1e-9
LR_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Where:
    """The four files of a submission, as refusals name the file at fault (other files are
    named by their plain names: run.json, log.json, scores.npz)."""

    result: str
    scores: str
    run: str
    log: str


def check_names(record: RunRecord, where: Where) -> None:
    """The strings that become file and folder names must be plain names."""
    plain_name(record.run_id, f"{where.result}: run_id")
    plain_name(record.dataset.name, f"{where.result}: dataset.name")
    plain_name(record.protocol.name, f"{where.result}: protocol.name")


def check_ranges(record: RunRecord, log: list[EpochLog] | None, where: Where) -> None:
    """Counts, fractions and timings within their ranges (the JSON reader already refuses
    NaN and Infinity)."""
    dataset = record.dataset
    if not 0 <= dataset.coverage <= 1:
        raise UserError(f"{where.result}: dataset.coverage is {dataset.coverage!r}; a coverage is the fraction of the "
                        "dataset's images found, from 0 to 1")
    for name in ("n_train", "n_test"):
        if getattr(dataset, name) < 0:
            raise UserError(f"{where.result}: dataset.{name} is {getattr(dataset, name)}; a count of images is never negative")
    for name in ("wall_time_s", "train_images_per_s", "eval_images_per_s"):
        value = getattr(record, name)
        if value is not None and value < 0:
            raise UserError(f"{where.result}: {name} is {value!r}; a time or a speed is never negative")
    for index, entry in enumerate(log or []):
        for name in ("seconds", "images_per_s"):
            if getattr(entry, name) < 0:
                raise UserError(f"{where.log}: entry {index} {name} is {getattr(entry, name)!r}; a time or a speed is "
                                "never negative")


def check_arrays(record: RunRecord, scores: np.ndarray, labels: np.ndarray, ids: np.ndarray, where: Where) -> None:
    """Scores and labels of the declared shapes and of the format's dtypes, finite scores, unique ids."""
    expected = (record.dataset.n_test, len(record.dataset.classes))
    for name, array, dtype in (("scores", scores, "float32"), ("labels", labels, "int8")):
        if array.dtype != dtype or array.shape != expected:
            raise UserError(f"{where.scores}: {name} is {array.dtype} {array.shape}, expected {dtype} of dataset.n_test "
                            f"{expected[0]} × {len(record.dataset.classes)} dataset.classes (result.json)")
    if ids.shape != (expected[0],) or len(set(ids.tolist())) != expected[0]:
        raise UserError(f"{where.scores}: ids must be {expected[0]} unique image ids")
    bad = int((~np.isfinite(scores)).sum())
    if bad:
        raise UserError(f"{where.scores}: scores holds {bad} non-finite value(s); logits must be finite")


def check_protocol(record: RunRecord, where: Where) -> Protocol:
    """The protocol this harness defines under the record's name, with the same hash and version."""
    block = record.protocol
    known = PROTOCOLS.get(block.name)
    if known is None:
        raise UserError(f"{where.result}: protocol.name {block.name!r} is unknown; known: {', '.join(sorted(PROTOCOLS))}")
    if block.hash != known.hash:
        other = protocol_by_hash(block.hash)
        whose = (f"the hash of protocol {other.name!r}, not of {block.name!r}" if other
                 else f"not the hash of protocol {block.name!r} of this harness ({known.hash})")
        raise UserError(f"{where.result}: protocol.hash {block.hash} is {whose}; the run followed other rules")
    if block.version != known.version:
        raise UserError(f"{where.result}: protocol.version is {block.version}, but protocol {block.name!r} of hash "
                        f"{known.hash} is version {known.version}; submit the run folder as the harness wrote it")
    return known


def _same(stored: Any, recomputed: Any) -> bool:
    if isinstance(recomputed, list):
        return isinstance(stored, list) and len(stored) == len(recomputed) and all(map(_same, stored, recomputed))
    if recomputed is None or isinstance(recomputed, (bool, str)):
        return stored == recomputed
    if not isinstance(stored, (int, float)) or isinstance(stored, bool):
        return False
    if math.isnan(recomputed):
        return math.isnan(stored)
    return abs(stored - recomputed) <= RESCORE_TOLERANCE


def check_metrics(record: RunRecord, scores: np.ndarray, labels: np.ndarray, where: Where) -> None:
    """Every stored metric is what re-scoring the stored scores gives, and nothing else is stored."""
    if record.metrics_version != METRICS_VERSION:
        raise UserError(f"{where.result}: metrics_version {record.metrics_version}, this harness has {METRICS_VERSION}; "
                        "re-score the run with this harness before submitting")
    recomputed = evaluate(scores, labels)
    stored = record.metrics
    for key, value in recomputed.items():
        if key not in stored:
            raise UserError(f"{where.result}: metrics.{key} is missing; re-score the run with this harness")
        if not _same(stored[key], value):
            shown = "a list" if isinstance(value, list) else stored[key]
            again = "another list" if isinstance(value, list) else value
            raise UserError(f"{where.result}: metrics.{key} is {shown} but re-scoring scores.npz gives {again}; "
                            "the metrics must come from the submitted scores")
    extra = sorted(set(stored) - set(recomputed))
    if extra:
        raise UserError(f"{where.result}: metrics.{extra[0]} is not a metric of metrics version {METRICS_VERSION}; remove it")


def proven_fingerprint(record: RunRecord, labels: np.ndarray, ids: np.ndarray, where: Where) -> str:
    """The fingerprint composed from the record's classes and train hash and the test ids and
    labels in the scores file; it must be the one the record states."""
    dataset = record.dataset
    if dataset.train_hash is None:
        raise UserError(f"{where.result}: dataset.train_hash is null, so the test labels in scores.npz cannot be "
                        "proven against the dataset's fingerprint; train the run again with this harness")
    composed = compose(dataset.classes, dataset.train_hash, split_hash(ids, labels))
    if composed != dataset.fingerprint:
        raise UserError(f"{where.scores}: its ids and labels with result.json's dataset.classes and dataset.train_hash "
                        f"give fingerprint {composed}, not result.json's dataset.fingerprint {dataset.fingerprint}; "
                        "scores.npz and result.json disagree: the test split in one, or the classes or train hash in "
                        "the other, changed after the run")
    return composed


def data_status(record: RunRecord, canonical: str | None, where: Where) -> str:
    """``canonical`` when the proven fingerprint is the dataset's declared one, ``non-canonical``
    for a dataset that declares none; refused when it declares another."""
    if canonical is None:
        return "non-canonical"
    dataset = record.dataset
    if dataset.fingerprint != canonical:
        raise UserError(f"{where.scores}: ids and labels give dataset {dataset.name!r} fingerprint {dataset.fingerprint} "
                        f"(coverage {100 * dataset.coverage:.1f}%), not its canonical {canonical}; leaderboards take runs "
                        "on the complete official data with its labels unchanged")
    return "canonical"


def check_run_file(record: RunRecord, run: ResolvedRun, where: Where) -> None:
    """The result must be the result of the resolved run stored beside it."""
    if record.dataset.name != run.dataset:
        raise UserError(f"{where.result}: dataset.name is {record.dataset.name!r} but run.json trained dataset "
                        f"{run.dataset!r}; a leaderboard files a run under the dataset it trained (a plugin's Dataset "
                        "carries the name it is registered under)")
    pretrained_mode = {"none": "none", "imagenet": "imagenet"}.get(run.pretrained, "file")
    pairs = [
        ("run_id", record.run_id, run.run_id),
        ("model.name", record.model.name, run.model),
        ("augmentation.name", record.augmentation.name, run.augmentation),
        ("loss.name", record.loss.name, run.loss),
        ("recipe.name", record.recipe.name if record.recipe else recipes.DEFAULT_RECIPE, run.recipe),
        ("size", record.size, run.size),
        ("seed", record.seed, run.seed),
        ("protocol.name", record.protocol.name, run.protocol),
        ("protocol.hash", record.protocol.hash, run.protocol_hash),
        ("dataset.fingerprint", record.dataset.fingerprint, run.fingerprint),
        ("model.pretrained.mode", record.model.pretrained.mode, pretrained_mode),
    ]
    if run.device != "auto":
        pairs.append(("device type", record.device.split(":")[0], run.device.split(":")[0]))
    if run.precision != "auto":
        pairs.append(("precision", record.precision, run.precision))
    if pretrained_mode == "file":
        pairs += [(f"model.pretrained.files[{i}].file", f.file, run.pretrained) for i, f in enumerate(record.model.pretrained.files)]
    for name, recorded, resolved in pairs:
        if recorded != resolved:
            raise UserError(f"{where.result}: {name} is {recorded!r} but run.json has {resolved!r}; submit the run "
                            "folder as the harness wrote it")
    if record.model.pretrained.mode != "none" and not record.model.pretrained.files:
        raise UserError(f"{where.result}: model.pretrained.files is empty although mode is "
                        f"{record.model.pretrained.mode!r}; the weights a run loads are always recorded")


def scheduled_rates(rules: Protocol, epoch: int) -> dict[str, float]:
    """The learning rates the protocol's step schedule gives in ``epoch`` (counted from 0)."""
    factor = rules.lr_gamma ** sum(1 for milestone in rules.lr_milestones if milestone <= epoch)
    return {"head": rules.lr_head * factor, "backbone": rules.lr_backbone * factor}


def check_log(log: list[EpochLog], run: ResolvedRun, rules: Protocol, where: Where) -> None:
    """One entry per epoch trained, in order, each with the protocol's learning rates (under
    another recipe, the recipe's: ``check_optimizer`` recomputes them)."""
    if len(log) != run.epochs:
        raise UserError(f"{where.log}: {len(log)} epoch(s) logged, but run.json has epochs {run.epochs}; a finished "
                        "run logs every epoch it trained")
    for index, entry in enumerate(log):
        if entry.epoch != index:
            raise UserError(f"{where.log}: entry {index} is epoch {entry.epoch}; expected epoch {index}")
        if run.recipe != recipes.DEFAULT_RECIPE:
            continue
        expected = scheduled_rates(rules, index)
        used = entry.lr
        if set(used) != set(expected) or any(not math.isclose(used[k], v, rel_tol=LR_TOLERANCE) for k, v in expected.items()):
            raise UserError(f"{where.log}: epoch {index} lr is {used}, but protocol {rules.name!r} schedules "
                            f"head {expected['head']:g}, backbone {expected['backbone']:g} for that epoch")


def expected_deviations(record: RunRecord, run: ResolvedRun) -> dict[str, dict[str, Any]]:
    """The deviations from ``rules`` that the run folder shows, computed as the runner does
    (``ResolvedRun.deviations``), with the initialisation recomputed from the weights files."""
    return run.deviations(init_used(record.model.pretrained), record.loss, record.recipe)


_EVIDENCE = {
    "epochs": "run.json and log.json show {used} epoch(s) trained",
    "batch_size": "run.json trains batches of {used}",
    "sizes": "run.json trains at size {used[0]}",
    "init": "model.pretrained shows init {used!r}",
    "loss": "run.json trains with loss {used!r}",
    "recipe": "run.json trains with recipe {used!r}",
}


def check_deviations(record: RunRecord, expected: dict[str, dict[str, Any]], where: Where) -> None:
    """``protocol.deviations`` must be exactly the recomputed deviations."""
    recorded = record.protocol.deviations
    for name in sorted(set(recorded) | set(expected)):
        if name not in recorded:
            change = expected[name]
            evidence = _EVIDENCE[name].format(used=change["used"])
            raise UserError(f"{where.result}: protocol.deviations.{name} is missing: {evidence}, where protocol "
                            f"{record.protocol.name!r} has {change['protocol']!r}")
        if name not in expected:
            raise UserError(f"{where.result}: protocol.deviations.{name} is recorded, but run.json and "
                            "log.json show no such deviation")
        if recorded[name] != expected[name]:
            raise UserError(f"{where.result}: protocol.deviations.{name} is {recorded[name]!r}, but run.json and "
                            f"log.json give {expected[name]!r}")


def check_optimizer(log: list[EpochLog], record: RunRecord, run: ResolvedRun, rules: Protocol, component,
                    where: Where) -> None:
    """What the optimizer held at each epoch's first step (log.json) must be what recipe
    ``component`` makes for this protocol and these steps per epoch, recomputed here on
    placeholder parameters (``harness.recipes.planned``): its class and every param group's
    hyperparameters. A record from before recipes (no ``recipe`` block) trained with the
    protocol's SGD, which ``check_log`` checks by its rates."""
    recipe = record.recipe
    if recipe is None:
        if run.recipe != recipes.DEFAULT_RECIPE or any(entry.optimizer is not None for entry in log):
            raise UserError(f"{where.result}: recipe is missing, but run.json and log.json show a recipe; submit the "
                            "run folder as the harness wrote it")
        return
    spec = component.spec
    steps = recipes.steps_per_epoch(record.dataset.n_train, run.batch_size, record.world_size)
    for name, recorded, expected in (("recipe.version", recipe.version, spec.version),
                                     ("recipe.ema_decay", recipe.ema_decay, spec.ema_decay),
                                     ("recipe.steps_per_epoch", recipe.steps_per_epoch, steps)):
        if recorded != expected:
            raise UserError(f"{where.result}: {name} is {recorded!r}, but {component.label} with dataset.n_train "
                            f"{record.dataset.n_train} and batch {run.batch_size} gives {expected!r}; submit with the "
                            "recipe the run trained with")
    trained = dataclasses.replace(rules, epochs=run.epochs, batch_size=run.batch_size)  # what the trainer gave it
    plan, scheduler = recipes.planned(component, trained, steps, run.epochs)
    for name, recorded, expected in (("recipe.optimizer", recipe.optimizer, plan[0]["class"]),
                                     ("recipe.scheduler", recipe.scheduler, scheduler)):
        if recorded != expected:
            raise UserError(f"{where.result}: {name} is {recorded!r}, but {component.label} makes {expected!r}")
    for index, (entry, expected) in enumerate(zip(log, plan)):
        if entry.optimizer is None:
            raise UserError(f"{where.log}: epoch {index} does not record the optimizer; a run of this harness records "
                            "what its optimizer held every epoch")
        found = recipes.difference(entry.optimizer, expected, "optimizer")
        if found:
            raise UserError(f"{where.log}: epoch {index} {found} ({component.label}); the optimizer was changed outside "
                            "the recipe: declare the change in a recipe (harness.RecipeSpec) and train again")
