"""``nuswide``: NUS-WIDE with its 81 ground-truth concepts, from the official release layout.

``--data-root`` is the folder holding (or its ``NUS-WIDE`` / ``nuswide`` folder holding)::

    Concepts81.txt                 (or ConceptsList/Concepts81.txt) the 81 concepts, in order
    ImageList/TrainImagelist.txt   161,789 entries such as  actor\\0001_2124494179.jpg
    ImageList/TestImagelist.txt    107,859 entries
    ImageList/Imagelist.txt        optional: all entries; checked to equal train + test
    Groundtruth/TrainTestLabels/Labels_<concept>_{Train,Test}.txt   one 0/1 per list entry
    Flickr/<folder>/<file>         the images, as the lists name them

List entries may use ``\\`` or ``/`` and may carry a ``...\\Flickr\\`` prefix; the image id is
``<folder>/<file stem>``. Images are crawled from Flickr and many copies lack some: the ones
not found are problems, or with ``skip_missing`` are left out, which lowers ``coverage`` and
changes the fingerprint (its ids change). Images with no concept at all are kept: they
are negatives for every class, the official lists include them, and dropping them would
change the benchmark (``info["without_labels"]`` counts them). Papers that used only the images they could
download report other sizes (for example 100,893 train / 67,742 test); those are coverage
below 1 of this same benchmark.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from harness import DatasetSpec
from harness.errors import UserError
from harness.specs import Dataset
from plugins.datasets.manifest import assemble

SPLITS = {"train": "Train", "test": "Test"}
CANONICAL = {"train": 161789, "test": 107859}
_PATH_SEPARATORS = re.compile(r"[\\/]")


def find_nuswide(data_root: Path | None) -> Path:
    """The release folder: the one holding ``ImageList/TrainImagelist.txt``."""
    if data_root is None:
        raise UserError("dataset 'nuswide' needs --data-root: the folder holding ImageList/, Groundtruth/ and Flickr/")
    root = Path(data_root).expanduser()
    for candidate in (root, root / "NUS-WIDE", root / "nuswide"):
        if (candidate / "ImageList" / "TrainImagelist.txt").is_file():
            return candidate
    raise UserError(
        f"{root / 'ImageList' / 'TrainImagelist.txt'} not found; pass the folder where the NUS-WIDE "
        "ImageList, Groundtruth and ConceptsList archives and the Flickr image folder were extracted"
    )


def image_entry(line: str) -> str:
    """``actor\\0001_2124494179.jpg`` (or ``C:\\ImageData\\Flickr\\actor\\...``) → ``actor/0001_2124494179.jpg``."""
    parts = [part for part in _PATH_SEPARATORS.split(line.strip()) if part]
    if "Flickr" in parts:
        parts = parts[len(parts) - parts[::-1].index("Flickr"):]
    return "/".join(parts)


def read_list(path: Path) -> list[str]:
    """The entries of one image list, normalised by :func:`image_entry`."""
    if not path.is_file():
        raise UserError(f"{path} not found; extract the NUS-WIDE ImageList archive into {path.parent.parent}")
    return [image_entry(line) for line in path.read_text().splitlines() if line.strip()]


def read_concepts(base: Path) -> list[str]:
    """The 81 concept names in the order of ``Concepts81.txt``."""
    for path in (base / "Concepts81.txt", base / "ConceptsList" / "Concepts81.txt"):
        if path.is_file():
            concepts = path.read_text().split()
            if len(set(concepts)) != len(concepts) or not concepts:
                raise UserError(f"{path} must list distinct concept names, one a line")
            return concepts
    raise UserError(f"{base / 'Concepts81.txt'} not found; extract the NUS-WIDE ConceptsList archive into {base}")


def read_labels(path: Path, n: int) -> np.ndarray:
    """One 0/1 per line, ``n`` lines, as a uint8 vector."""
    if not path.is_file():
        raise UserError(f"{path} not found; extract the NUS-WIDE Groundtruth archive into {path.parents[2]}")
    digits = path.read_bytes().translate(None, b" \t\r\n")
    values = np.frombuffer(digits, dtype=np.uint8) - ord("0")
    if len(values) != n or (values > 1).any():
        raise UserError(f"{path} must hold {n} lines of 0 or 1, one per image list entry; download it again")
    return values


def load(data_root: Path | None, options: dict) -> Dataset:
    """Read the release layout; see the module docstring."""
    base = find_nuswide(data_root)
    concepts = read_concepts(base)
    listed = {}
    entries: dict[str, list[str]] = {}
    unlabelled = {}
    for split, suffix in SPLITS.items():
        entries[split] = read_list(base / "ImageList" / f"{suffix}Imagelist.txt")
        n = len(entries[split])
        labels = np.zeros((n, len(concepts)), dtype=np.int8)
        for j, concept in enumerate(concepts):
            labels[:, j] = read_labels(base / "Groundtruth" / "TrainTestLabels" / f"Labels_{concept}_{suffix}.txt", n)
        ids = [entry.rsplit(".", 1)[0] for entry in entries[split]]
        paths = [base / "Flickr" / entry for entry in entries[split]]
        listed[split] = (ids, paths, labels)
        unlabelled[split] = int((labels.max(axis=1, initial=0) == 0).sum())
    problems = []
    all_list = base / "ImageList" / "Imagelist.txt"
    if all_list.is_file():
        everything = set(read_list(all_list))
        for split, split_entries in entries.items():
            problems.extend(
                {"split": split, "id": entry.rsplit(".", 1)[0], "file": str(all_list), "problem": "not in Imagelist.txt"}
                for entry in split_entries
                if entry not in everything
            )
        in_splits = set(entries["train"]) | set(entries["test"])
        problems.extend(
            {"split": None, "id": entry.rsplit(".", 1)[0], "file": str(all_list),
             "problem": "in Imagelist.txt but in neither TrainImagelist.txt nor TestImagelist.txt"}
            for entry in sorted(everything - in_splits)
        )
    info = {"root": str(base.resolve()), "without_labels": unlabelled}
    return assemble("nuswide", concepts, listed, options, info=info, problems=problems)


NUSWIDE = DatasetSpec(
    name="nuswide",
    load=load,
    version="1",
    description="NUS-WIDE: 81 concepts, official lists 161,789 train / 107,859 test (coverage recorded).",
    canonical=dict(CANONICAL),
)
