"""Synthetic run folders in the exact result format, from random scores and ``evaluate``.

Every fake run is a ``harness.results.RunRecord``, the same type the trainer writes. Runs of
the same ``data_seed`` share test ids and labels (the same "dataset", whose fingerprint is
composed from them as ``harness.data`` does); ``score_seed`` varies the model. No training,
no torch: fast enough for every test.

Run as a script, this file is a stand-in for the ``bench`` executable in sweep tests:
``run`` writes a synthetic run folder (exit 1 for model ``broken``), ``fuse`` is the real one;
``fake_training`` stands in for ``harness.runner.run`` in the same way, in-process.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np

from harness.config import ResolvedRun
from harness.data import compose, split_hash
from harness.metrics import METRICS_VERSION, evaluate
from harness.naming import default_run_id
from harness.protocol import get_protocol
from harness.results import (
    ComponentRecord,
    DatasetRecord,
    ModelRecord,
    PluginRecord,
    Pretrained,
    ProtocolRecord,
    RunRecord,
    WeightsFile,
)
from harness.files import write_json
from harness.rundir import write_scores
from harness.splits import write_train_split

BUILT_IN = PluginRecord(name="plugins.models", source="built-in", distribution="multilabel-bench",
                        distribution_version="0.2.0", sha256="0" * 64)
ENVIRONMENT = {"versions": {"harness": "0.2.0"}, "git_commit": None, "platform": "test", "cpu": "test",
               "torch_threads": 1, "gpu": None}
TRAIN_IDS = [f"train{i:04d}" for i in range(100)]


def train_labels(n_classes: int) -> np.ndarray:
    """The synthetic train split's labels (its ids are ``TRAIN_IDS``)."""
    return (np.random.default_rng(7).random((len(TRAIN_IDS), n_classes)) < 0.3).astype(np.int8)


def make_labels(n_test: int, n_classes: int, data_seed: int) -> np.ndarray:
    """1/0 labels with a few ignored (-1) entries and at least one positive per class."""
    rng = np.random.default_rng(data_seed)
    labels = (rng.random((n_test, n_classes)) < 0.3).astype(np.int8)
    labels[rng.random((n_test, n_classes)) < 0.05] = -1
    labels[np.arange(n_classes) % n_test, np.arange(n_classes)] = 1
    return labels


def make_run(
    root: Path,
    *,
    dataset: str = "toy",
    model: str = "resnet101",
    aug: str = "flip",
    size: int = 448,
    protocol: str = "wang2019",
    seed: int = 0,
    n_test: int = 60,
    n_classes: int = 5,
    data_seed: int = 0,
    score_seed: int | None = None,
    fingerprint: str | None = None,
    shuffle: int | None = None,
    drop: int = 0,
    run_id: str | None = None,
    gpu: str | None = None,
    precision: str = "fp32",
    deviations: dict | None = None,
    loss: str = "bce",
    backbone: str | None = None,
    run_files: bool = False,
    epochs: int | None = None,
    data: tuple[list[str], str, np.ndarray, np.ndarray] | None = None,
) -> Path:
    """Write ``root/<run-id>/`` with ``scores.npz`` and ``result.json``; returns the folder.

    ``shuffle`` permutes the stored image order (same scores per id); ``drop`` leaves out
    the last test images. The fingerprint is the complete dataset's (before ``drop`` and
    ``shuffle``), as a real run's would be.

    ``run_files`` also writes ``run.json`` and ``log.json`` as the trainer would (``epochs``
    trained, the protocol's learning rates, the deviations computed unless given, the
    published weights file recorded for ``imagenet``). ``data`` is ``(classes, train_hash,
    test ids, test labels)`` of a real dataset, instead of synthetic ones.
    """
    if data is None:
        labels = make_labels(n_test, n_classes, data_seed)
        ids = np.asarray([f"img{i:04d}" for i in range(n_test)])
        classes = [f"class{c}" for c in range(n_classes)]
        train_hash = split_hash(TRAIN_IDS, train_labels(n_classes))
    else:
        classes, train_hash, ids, labels = data
        ids = np.asarray(ids)
    fingerprint = fingerprint or compose(classes, train_hash, split_hash(ids, labels))
    rng = np.random.default_rng(1000 + (seed if score_seed is None else score_seed))
    scores = (2.0 * (labels == 1) - 1 + rng.normal(0, 1.5, labels.shape)).astype(np.float32)
    if drop:
        ids, labels, scores = ids[:-drop], labels[:-drop], scores[:-drop]
    if shuffle is not None:
        order = np.random.default_rng(shuffle).permutation(len(ids))
        ids, labels, scores = ids[order], labels[order], scores[order]
    run_id = run_id or default_run_id(dataset, model, aug, size, protocol, seed)
    run_dir = Path(root) / run_id
    write_scores(run_dir / "scores.npz", scores, labels, ids)
    rules = get_protocol(protocol)
    epochs = epochs or rules.epochs
    loss_record = ComponentRecord(name=loss, version="1", plugin=PluginRecord(name="plugins.losses", source="built-in"))
    if run_files and deviations is None:
        deviations = _deviations(rules, epochs, size, loss_record)
    pretrained = Pretrained(mode=rules.init)
    if run_files and rules.init == "imagenet":
        pretrained.files = [WeightsFile(file=f"/hub/{model}-63fe2227.pth", expected_name=f"{model}-63fe2227.pth",
                                        sha256="63fe2227" + "0" * 56, matches_published=True)]
    record = RunRecord(
        run_id=run_id,
        kind="train",
        created="2024-01-01T00:00:00+00:00",
        metrics_version=METRICS_VERSION,
        metrics=evaluate(scores, labels),
        dataset=DatasetRecord(
            name=dataset, version="1", plugin=PluginRecord(name="plugins.datasets", source="built-in"),
            fingerprint=fingerprint, train_hash=train_hash,
            classes=classes, n_train=100, n_test=len(ids), coverage=1.0,
        ),
        protocol=ProtocolRecord(name=protocol, version=rules.version, hash=rules.hash, deviations=deviations or {}),
        model=ModelRecord(name=model, version="1", plugin=BUILT_IN, pretrained=pretrained,
                          head_prefixes=["fc"], backbone=backbone),
        augmentation=ComponentRecord(name=aug, version="1", plugin=PluginRecord(name="plugins.augmentations", source="built-in")),
        loss=loss_record,
        size=size,
        seed=seed,
        device="cuda:0" if gpu else "cpu",
        gpu=gpu,
        world_size=1,
        precision=precision,
        tf32=False,
        pipeline={"version": "2"},
        environment=ENVIRONMENT,
        wall_time_s=10.0,
        train_images_per_s=100.0 + seed,
        eval_images_per_s=400.0,
    )
    write_json(run_dir / "result.json", record.to_dict())
    if data is None:  # the train split that train_hash hashes, as the trainer writes it
        write_train_split(run_dir, TRAIN_IDS, train_labels(n_classes))
    if run_files:
        _write_run_files(run_dir, record, rules, epochs)
    return run_dir


def _deviations(rules, epochs: int, size: int, loss: ComponentRecord) -> dict:
    deviations = {}
    if epochs != rules.epochs:
        deviations["epochs"] = {"protocol": rules.epochs, "used": epochs}
    if size not in rules.sizes:
        deviations["sizes"] = {"protocol": list(rules.sizes), "used": [size]}
    if loss.name != rules.loss:
        deviations["loss"] = {"protocol": rules.loss, "used": loss.name, "version": loss.version,
                              "plugin": dataclasses.asdict(loss.plugin)}
    return deviations


def _write_run_files(run_dir: Path, record: RunRecord, rules, epochs: int) -> None:
    """``run.json`` and ``log.json`` of ``record`` as the trainer writes them."""
    resolved = ResolvedRun(
        dataset=record.dataset.name, data_root=None, model=record.model.name, augmentation=record.augmentation.name,
        loss=record.loss.name, size=record.size, protocol=rules.name, protocol_hash=rules.hash, epochs=epochs,
        batch_size=rules.batch_size, pretrained=rules.init, seed=record.seed, device=record.device.split(":")[0],
        precision="auto", skip_missing=False, cache=True, out=str(run_dir.parent), run_id=record.run_id,
        fingerprint=record.dataset.fingerprint,
    )
    write_json(run_dir / "run.json", resolved.to_dict())
    log = []
    for epoch in range(epochs):
        factor = 1.0
        for milestone in rules.lr_milestones:
            if epoch >= milestone:
                factor *= rules.lr_gamma
        log.append({"epoch": epoch, "lr": {"head": rules.lr_head * factor, "backbone": rules.lr_backbone * factor},
                    "loss": 0.5 / (epoch + 1), "seconds": 1.0, "images_per_s": 100.0})
    write_json(run_dir / "log.json", log)


def _fake_bench(argv: list[str]) -> int:
    import os

    if argv[0] == "fuse":
        from harness.cli import main

        return main(argv, standalone_mode=False) or 0
    options = {"--dataset": "shapes", "--protocol": "smoke", "--seed": "0", **dict(zip(argv[1::2], argv[2::2]))}
    if options["--model"] == "broken":
        print("Error: model 'broken' exploded")
        return 1
    make_run(
        Path(options["--out"]),
        dataset=options["--dataset"],
        model=options["--model"],
        aug=options["--aug"],
        size=int(options["--size"]),
        protocol=options["--protocol"],
        seed=int(options["--seed"]),
        score_seed=int(options["--size"]) + sum(map(ord, options["--aug"])),
        run_id=options["--run-id"],
        gpu=os.environ.get("CUDA_VISIBLE_DEVICES") or None,
    )
    return 0


def fake_training(config=None, *, resume=None, data_root=None, plugins=()):
    """Stands in for ``harness.runner.run`` in sweep tests: a synthetic run folder per config."""
    from harness.errors import UserError
    from harness.results import RunRecord

    if config.model == "broken":
        raise UserError("model 'broken' exploded")
    run_dir = make_run(Path(config.out), dataset=config.dataset, model=config.model, aug=config.augmentation,
                       size=config.size, protocol=config.protocol, seed=config.seed,
                       score_seed=config.size + sum(map(ord, config.augmentation)), run_id=config.run_id)
    return RunRecord.read(run_dir)


if __name__ == "__main__":
    sys.exit(_fake_bench(sys.argv[1:]))
