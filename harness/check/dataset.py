"""``bench check`` for datasets: load twice and check the dataset contract (``harness.contracts``),
class names, ids, image files and the fingerprint."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from harness import contracts
from harness.check.checklist import Checklist, Problem, Skip
from harness.data import fingerprint
from harness.errors import UserError
from harness.specs import Dataset
from harness.splits import check_disjoint


def check_dataset(checklist: Checklist) -> None:
    """Load from ``checklist.data_root`` twice; check classes, splits, the label contract
    (``harness.contracts``), ids and the fingerprint."""
    spec, data_root = checklist.component.spec, checklist.data_root
    loaded: dict[str, Dataset] = {}

    def load() -> Dataset:
        dataset = spec.load(data_root, {})
        if not isinstance(dataset, Dataset):
            raise Problem(f"load returned {type(dataset).__name__}, not a harness.Dataset")
        return dataset

    def loads() -> str:
        try:
            loaded["dataset"] = load()
        except UserError as error:
            if data_root is None:
                raise Skip(f"needs --data-root ({error})") from None
            raise
        dataset = loaded["dataset"]
        return ", ".join(f"{name} {len(split)}" for name, split in sorted(dataset.splits.items()))

    if not checklist.run("load(data_root, options)", loads):
        return
    dataset = loaded["dataset"]

    def class_names() -> str:
        classes = list(dataset.classes)
        if not classes:
            raise Problem("no class names")
        bad = [c for c in classes if not isinstance(c, str) or not c.strip()]
        if bad:
            raise Problem(f"class names must be non-empty strings, got {bad[:3]!r}")
        repeated = sorted(c for c, n in Counter(classes).items() if n > 1)
        if repeated:
            raise Problem(f"repeated class names: {', '.join(repeated)}")
        return f"{len(classes)} classes"

    def splits() -> None:
        contracts.check_splits(dataset.splits, f"dataset {spec.name!r}")
        empty = [s for s, split in dataset.splits.items() if len(split) == 0]
        if empty:
            raise Problem(f"empty split(s): {', '.join(empty)}")

    def labels() -> None:
        for name, split in sorted(dataset.splits.items()):
            contracts.check_labels(split.labels, len(dataset.classes), f"split {name}")

    def unique_ids() -> None:
        """Ids unique within each split; train and test disjoint in ids and files, as ``bench run`` requires."""
        for name, split in sorted(dataset.splits.items()):
            repeated = sorted(i for i, n in Counter(map(str, split.ids)).items() if n > 1)
            if repeated:
                raise Problem(f"split {name}: {len(repeated)} image id(s) appear more than once, e.g. {repeated[0]}")
        if {"train", "test"} <= dataset.splits.keys():
            try:
                check_disjoint(dataset, spec.name, str(data_root) if data_root else None)
            except UserError as error:
                raise Problem(str(error)) from None

    def image_files() -> None:
        for name, split in sorted(dataset.splits.items()):
            ends = (split.image_paths[0], split.image_paths[-1]) if len(split) else ()
            for path in map(Path, ends):
                if not path.is_file():
                    raise Problem(f"split {name}: image file {path} does not exist")

    def stable_fingerprint() -> str:
        if not {"train", "test"} <= dataset.splits.keys():
            raise Skip("needs train and test splits")
        first, second = fingerprint(dataset), fingerprint(load())
        if first != second:
            raise Problem(f"loading twice gives fingerprints {first} and {second}; fix the order of ids and classes")
        return first

    checklist.run("unique, non-empty class names", class_names)
    checklist.run("train and test splits present", splits)
    checklist.run("labels are int8 N×C of 1, 0, -1", labels)
    checklist.run("unique image ids, disjoint train and test", unique_ids)
    checklist.run("first and last image file of each split exist", image_files)
    checklist.run("stable fingerprint (loaded twice)", stable_fingerprint)
