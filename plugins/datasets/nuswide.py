"""``nuswide``: NUS-WIDE with its 81 ground-truth concepts, from the official release layout.

``--data-root`` is the folder holding (or its ``NUS-WIDE`` / ``nuswide`` folder holding)::

    Concepts81.txt                 (or ConceptsList/Concepts81.txt) the 81 concepts, in order
    ImageList/TrainImagelist.txt   161,789 entries such as  actor\\0001_2124494179.jpg
    ImageList/TestImagelist.txt    107,859 entries
    ImageList/Imagelist.txt        optional: all entries; checked to equal train + test
    Groundtruth/TrainTestLabels/Labels_<concept>_{Train,Test}.txt   one 0/1 per list entry
    Flickr/<folder>/<file>         the images, as the lists name them

List entries may use ``\\`` or ``/`` and may carry a ``...\\Flickr\\`` prefix; the image id is
``<folder>/<file stem>``. An entry whose part below ``Flickr`` could lead outside ``Flickr/``
(``..``, an absolute path, see ``harness.leaves_folder``) is refused: a problem naming the
list file, never opened. The 166 text files are parsed once per content and kept in the
annotation cache (``harness.annotations``). Images are crawled from Flickr and many copies lack some: the ones
not found are problems, or with ``skip_missing`` are left out, which lowers ``coverage`` and
changes the fingerprint (its ids change). Images with no concept at all are kept: they
are negatives for every class, the official lists include them, and dropping them would
change the benchmark (``info["without_labels"]`` counts them). Papers that used only the images they could
download report other sizes (for example 100,893 train / 67,742 test); those are coverage
below 1 of this same benchmark.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness import Dataset, DatasetSpec, Files, UserError, assemble, leaves_folder
from harness.annotations import pack_strings, parsed, unpack_strings
from harness.datasets import quoted

SPLITS = {"train": "Train", "test": "Test"}
CANONICAL = {"train": 161789, "test": 107859}
PARSE_VERSION = "1"  # of what parse() returns; bump it when that changes, so cached parses are redone


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


def below_flickr(line: str) -> str:
    """The part of a list line below its last ``Flickr`` folder, with ``/`` for every separator
    (all of the line when it names no such folder)."""
    text = "/" + line.strip().replace("\\", "/") + "/"
    cut = text.rfind("/Flickr/")
    return text[cut + len("/Flickr/") if cut >= 0 else 1:-1]


def image_entry(line: str) -> str:
    """``actor\\0001_2124494179.jpg`` (or ``C:\\ImageData\\Flickr\\actor\\...``) → ``actor/0001_2124494179.jpg``."""
    return _tidy(below_flickr(line))


def _tidy(below: str) -> str:
    """``below`` without empty parts (``a//b/`` → ``a/b``)."""
    if "//" in below or below[:1] == "/" or below[-1:] == "/":
        return "/".join(part for part in below.split("/") if part)
    return below


def read_list(path: Path) -> list[str]:
    """The lines of one image list that hold an entry, stripped but otherwise as written."""
    if not path.is_file():
        raise UserError(f"{path} not found; extract the NUS-WIDE ImageList archive into {path.parent.parent}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise UserError(f"{path} is not UTF-8 text ({error.reason} at byte {error.start}); download it again") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def concepts_file(base: Path) -> Path:
    """``Concepts81.txt``, in the release folder or in its ``ConceptsList`` folder."""
    for path in (base / "Concepts81.txt", base / "ConceptsList" / "Concepts81.txt"):
        if path.is_file():
            return path
    raise UserError(f"{base / 'Concepts81.txt'} not found; extract the NUS-WIDE ConceptsList archive into {base}")


def read_concepts(path: Path) -> list[str]:
    """The concept names in the order of ``Concepts81.txt``; each names its label files, so a
    name is a plain word."""
    concepts = path.read_text().split()
    if len(set(concepts)) != len(concepts) or not concepts:
        raise UserError(f"{path} must list distinct concept names, one a line")
    for concept in concepts:
        if any(part in concept for part in ("/", "\\", "\0")):
            raise UserError(f"{path}: concept {quoted(concept)} is no plain name; use the official Concepts81.txt")
    return concepts


def label_file(base: Path, concept: str, suffix: str) -> Path:
    """The 0/1 file of one concept for one split (``Train`` or ``Test``)."""
    return base / "Groundtruth" / "TrainTestLabels" / f"Labels_{concept}_{suffix}.txt"


def read_labels(path: Path, n: int) -> np.ndarray:
    """One 0/1 per line, ``n`` lines, as a uint8 vector."""
    if not path.is_file():
        raise UserError(f"{path} not found; extract the NUS-WIDE Groundtruth archive into {path.parents[2]}")
    digits = path.read_bytes().translate(None, b" \t\r\n")
    values = np.frombuffer(digits, dtype=np.uint8) - ord("0")
    if len(values) != n or (values > 1).any():
        raise UserError(f"{path} must hold {n} lines of 0 or 1, one per image list entry; download it again")
    return values


def parse(base: Path, concepts: list[str]) -> dict[str, np.ndarray]:
    """The lists and label files as arrays, per split: the entries kept and their label rows,
    the lines refused, and the kept entries missing from ``Imagelist.txt``; and the entries
    of ``Imagelist.txt`` in neither split."""
    arrays = {}
    entries = {}
    for split, suffix in SPLITS.items():
        lines = read_list(base / "ImageList" / f"{suffix}Imagelist.txt")
        below = [below_flickr(line) for line in lines]
        labels = np.zeros((len(lines), len(concepts)), dtype=np.int8)
        for j, concept in enumerate(concepts):
            labels[:, j] = read_labels(label_file(base, concept, suffix), len(lines))
        bad = [i for i, part in enumerate(below) if leaves_folder(part)]
        if bad:
            keep = np.setdiff1d(np.arange(len(lines)), bad)
            below, labels = [below[i] for i in keep], labels[keep]
        entries[split] = [_tidy(part) for part in below]
        arrays[f"{split}_names"], arrays[f"{split}_ends"] = pack_strings(entries[split])
        arrays[f"{split}_labels"] = labels
        arrays[f"{split}_refused"], arrays[f"{split}_refused_ends"] = pack_strings([lines[i] for i in bad])
    all_list = base / "ImageList" / "Imagelist.txt"
    everything = {image_entry(line) for line in read_list(all_list)} if all_list.is_file() else None
    for split, names in entries.items():
        absent = [] if everything is None else [i for i, entry in enumerate(names) if entry not in everything]
        arrays[f"{split}_absent"] = np.array(absent, dtype=np.int64)
    extra = sorted(everything - set(entries["train"]) - set(entries["test"])) if everything else []
    arrays["extra"], arrays["extra_ends"] = pack_strings(extra)
    return arrays


def load(data_root: Path | None, options: dict) -> Dataset:
    """Read the release layout (parsed once per content); see the module docstring."""
    base = find_nuswide(data_root)
    concepts_path = concepts_file(base)
    concepts = read_concepts(concepts_path)
    all_list = base / "ImageList" / "Imagelist.txt"
    files = [concepts_path, *(base / "ImageList" / f"{suffix}Imagelist.txt" for suffix in SPLITS.values()),
             *([all_list] if all_list.is_file() else []),
             *(label_file(base, concept, suffix) for suffix in SPLITS.values() for concept in concepts)]
    arrays = parsed("nuswide", PARSE_VERSION, base, files, lambda: parse(base, concepts))
    listed = {}
    refused = []
    problems = []
    unlabelled = {}
    for split, suffix in SPLITS.items():
        list_file = base / "ImageList" / f"{suffix}Imagelist.txt"
        names = unpack_strings(arrays[f"{split}_names"], arrays[f"{split}_ends"])
        ids = [entry.rsplit(".", 1)[0] for entry in names]
        labels = arrays[f"{split}_labels"]
        refused += [{"split": split, "id": image_entry(line).rsplit(".", 1)[0], "file": str(list_file),
                     "problem": f"entry {quoted(line)} leads outside Flickr/; refused, not read "
                                f"(use the official {list_file.name})"}
                    for line in unpack_strings(arrays[f"{split}_refused"], arrays[f"{split}_refused_ends"])]
        problems += [{"split": split, "id": ids[i], "file": str(all_list), "problem": "not in Imagelist.txt"}
                     for i in arrays[f"{split}_absent"].tolist()]
        unlabelled[split] = int((labels.max(axis=1, initial=0) == 0).sum())
        listed[split] = (ids, Files(base / "Flickr", names), labels)
    problems += [{"split": None, "id": entry.rsplit(".", 1)[0], "file": str(all_list),
                  "problem": "in Imagelist.txt but in neither TrainImagelist.txt nor TestImagelist.txt"}
                 for entry in unpack_strings(arrays["extra"], arrays["extra_ends"])]
    info = {"root": str(base.resolve()), "without_labels": unlabelled}
    return assemble("nuswide", concepts, listed, options, info=info, problems=problems, refused=refused)


NUSWIDE = DatasetSpec(
    name="nuswide",
    load=load,
    version="1",
    description="NUS-WIDE: 81 concepts, official lists 161,789 train / 107,859 test (coverage recorded).",
    canonical=dict(CANONICAL),
)
