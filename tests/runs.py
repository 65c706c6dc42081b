"""Synthetic run folders in the exact result format, from random scores and ``evaluate``.

Runs of the same ``data_seed`` share test ids and labels (the same "dataset"); ``score_seed``
varies the model. No training, no torch: fast enough for every test.

Run as a script, this file is a stand-in for the ``bench`` executable in sweep tests:
``run`` writes a synthetic run folder (exit 1 for model ``broken``), ``fuse`` is the real one.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from harness.metrics import METRICS_VERSION, evaluate
from harness.protocol import get_protocol
from harness.results import RESULT_SCHEMA_VERSION, write_json, write_scores
from harness.runner import default_run_id

BUILT_IN = {"name": "plugins.models", "source": "built-in", "distribution": "multilabel-bench", "distribution_version": "0.1.0"}
ENVIRONMENT = {"versions": {"harness": "0.1.0"}, "git_commit": None, "platform": "test", "cpu": "test", "gpu": None}


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
) -> Path:
    """Write ``root/<run-id>/`` with ``scores.npz`` and ``result.json``; returns the folder.

    ``shuffle`` permutes the stored image order (same scores per id); ``drop`` leaves out
    the last test images.
    """
    labels = make_labels(n_test, n_classes, data_seed)
    ids = np.asarray([f"img{i:04d}" for i in range(n_test)])
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
    record = {
        "schema_version": RESULT_SCHEMA_VERSION,
        "run_id": run_id,
        "kind": "train",
        "created": "2024-01-01T00:00:00+00:00",
        "metrics_version": METRICS_VERSION,
        "metrics": evaluate(scores, labels),
        "dataset": {
            "name": dataset,
            "version": "1",
            "fingerprint": fingerprint or f"fp-{dataset}-{data_seed}",
            "coverage": 1.0,
            "classes": [f"class{c}" for c in range(n_classes)],
            "n_train": 100,
            "n_test": len(ids),
            "plugin": {"name": "plugins.datasets", "source": "built-in"},
        },
        "model": {"name": model, "version": "1", "plugin": BUILT_IN, "pretrained": {"mode": "imagenet", "file": None, "sha256": None}},
        "augmentation": {"name": aug, "version": "1", "plugin": {"name": "plugins.augmentations", "source": "built-in"}},
        "size": size,
        "protocol": {"name": protocol, "version": get_protocol(protocol).version, "hash": get_protocol(protocol).hash,
                     "deviations": deviations or {}},
        "seed": seed,
        "device": "cuda:0" if gpu else "cpu",
        "gpu": gpu,
        "world_size": 1,
        "precision": precision,
        "tf32": False,
        "environment": ENVIRONMENT,
        "wall_time_s": 10.0,
        "train_images_per_s": 100.0 + seed,
        "eval_images_per_s": 400.0,
    }
    write_json(run_dir / "result.json", record)
    return run_dir


def _fake_bench(argv: list[str]) -> int:
    import os

    if argv[0] == "fuse":
        from harness.cli import main

        return main(argv, standalone_mode=False) or 0
    options = dict(zip(argv[1::2], argv[2::2]))
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


if __name__ == "__main__":
    sys.exit(_fake_bench(sys.argv[1:]))
