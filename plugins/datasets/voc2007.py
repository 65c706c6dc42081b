"""``voc2007``: PASCAL VOC2007 classification from the official devkit layout.

``--data-root`` is the folder holding ``VOCdevkit/VOC2007`` (the folder both official tar
files, ``VOCtrainval_06-Nov-2007.tar`` and ``VOCtest_06-Nov-2007.tar``, extract into), or
the ``VOCdevkit`` or ``VOC2007`` folder itself. Splits: train = ``trainval`` (5,011 images),
test = ``test`` (4,952), in the order of ``ImageSets/Main/<split>.txt``.

Labels come from ``Annotations/<id>.xml``: a class with an object not marked difficult is
1; a class present only through ``<difficult>1</difficult>`` objects is -1 (ignored), as the
devkit's per-class files ``ImageSets/Main/<class>_<split>.txt`` encode it with 0; other
classes are 0. Where those per-class files exist, each disagreement with the XML is reported
as a problem. An id that is no plain file name (it holds ``/``, ``\\`` or ``..``) is refused:
a problem naming the list file, and neither its XML nor its image is opened.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np

from harness import Dataset, DatasetSpec, Files, UserError, assemble
from harness.datasets import quoted

CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)
SPLITS = {"train": "trainval", "test": "test"}
TAR_FILES = {"trainval": "VOCtrainval_06-Nov-2007.tar", "test": "VOCtest_06-Nov-2007.tar"}
CANONICAL = {"train": 5011, "test": 4952}

# Per-class counts of the complete official splits (devkit per-class files): images where
# the class is present, and images where it is present only as "difficult" (ignored).
# The test split totals 7,013 positives and 619 ignored; trainval 7,306 and 607.
CANONICAL_POSITIVES = {
    "train": (238, 243, 330, 181, 244, 186, 713, 337, 445, 141, 200, 421, 287, 245, 2008, 245, 96, 229, 261, 256),
    "test": (204, 239, 282, 172, 212, 174, 721, 322, 417, 127, 190, 418, 274, 222, 2007, 224, 97, 223, 259, 229),
}
CANONICAL_IGNORED = {
    "train": (2, 12, 3, 7, 18, 11, 48, 7, 127, 5, 63, 9, 7, 4, 87, 28, 1, 143, 2, 23),
    "test": (1, 11, 7, 4, 28, 9, 54, 10, 128, 0, 57, 15, 5, 11, 90, 30, 1, 132, 0, 26),
}
# harness.data.fingerprint of the complete official labels (computed from the devkit's
# per-class files); recompute it whenever that function changes.
CANONICAL_FINGERPRINT = "923b8ea6bbd098bc4917ee104c236ada"

_DEVKIT_TO_LABEL = {"1": 1, "-1": 0, "0": -1}
_WORDS = {1: "present", 0: "absent", -1: "difficult"}


def find_voc2007(data_root: Path | None) -> Path:
    """The ``VOC2007`` folder under ``data_root``, which may also be ``VOCdevkit`` or ``VOC2007``."""
    if data_root is None:
        raise UserError("dataset 'voc2007' needs --data-root: the folder holding VOCdevkit/VOC2007")
    root = Path(data_root).expanduser()
    for candidate in (root / "VOCdevkit" / "VOC2007", root / "VOC2007", root):
        if (candidate / "ImageSets").is_dir():
            return candidate
    raise UserError(
        f"{root / 'VOCdevkit' / 'VOC2007' / 'ImageSets'} not found; pass the folder where "
        f"{TAR_FILES['trainval']} and {TAR_FILES['test']} were extracted (or its VOCdevkit or VOC2007 folder)"
    )


def parse_annotation(path: Path) -> np.ndarray:
    """The label row of one ``Annotations/<id>.xml``; ``ValueError`` says what is wrong."""
    try:
        tree = ElementTree.parse(path)
    except ElementTree.ParseError as error:
        line, column = error.position
        raise ValueError(f"not well-formed XML (line {line}, column {column})") from None
    row = np.zeros(len(CLASSES), dtype=np.int8)
    for number, obj in enumerate(tree.getroot().findall("object"), start=1):
        name = (obj.findtext("name") or "").strip()
        if name not in CLASSES:
            raise ValueError(f"object {number} has unknown class {name!r}" if name else f"object {number} has no <name>")
        difficult = (obj.findtext("difficult") or "0").strip()
        if difficult not in ("0", "1"):
            raise ValueError(f"object {number} has <difficult>{difficult}</difficult>; expected 0 or 1")
        j = CLASSES.index(name)
        if difficult == "0":
            row[j] = 1
        elif row[j] == 0:
            row[j] = -1
    return row


def plain_id(image_id: str) -> bool:
    """Whether an id from a list file names a file in its folder and nothing else."""
    return not any(part in image_id for part in ("/", "\\", "..", "\0"))


def _cross_check(main: Path, list_name: str, split: str, ids: list[str], labels: np.ndarray,
                 refused: set[str]) -> list[dict]:
    """Problems where the devkit's per-class files (when present) disagree with the XML labels
    (ids already ``refused`` are not compared)."""
    problems = []
    row_of = {image_id: i for i, image_id in enumerate(ids)}
    for j, name in enumerate(CLASSES):
        path = main / f"{name}_{list_name}.txt"
        if not path.is_file():
            continue
        listed = set()
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or fields[1] not in _DEVKIT_TO_LABEL:
                raise UserError(f"{path} line {number}: expected '<image id> <1|-1|0>', got {line.strip()!r}")
            image_id, value = fields[0], _DEVKIT_TO_LABEL[fields[1]]
            listed.add(image_id)
            if image_id in refused:
                continue
            if image_id not in row_of:
                problems.append({"split": split, "id": image_id, "file": str(path),
                                 "problem": f"listed in {path.name} but not in {list_name}.txt"})
            elif labels[row_of[image_id], j] != value:
                ours = _WORDS[int(labels[row_of[image_id], j])]
                problems.append({"split": split, "id": image_id, "file": str(path),
                                 "problem": f"{name}: annotation XML says {ours}, {path.name} says {_WORDS[value]}"})
        problems.extend(
            {"split": split, "id": image_id, "file": str(path), "problem": f"not listed in {path.name}"}
            for image_id in ids
            if image_id not in listed
        )
    return problems


def load(data_root: Path | None, options: dict) -> Dataset:
    """Read the devkit layout; see the module docstring."""
    base = find_voc2007(data_root)
    main = base / "ImageSets" / "Main"
    listed = {}
    problems: list[dict] = []
    refused: list[dict] = []
    for split, list_name in SPLITS.items():
        list_file = main / f"{list_name}.txt"
        if not list_file.is_file():
            raise UserError(f"{list_file} not found; extract {TAR_FILES[list_name]} into the folder holding VOCdevkit")
        ids = list_file.read_text().split()
        bad = [image_id for image_id in ids if not plain_id(image_id)]
        refused += [{"split": split, "id": image_id, "file": str(list_file),
                     "problem": f"id {quoted(image_id)} is no plain file name (it holds '/', '\\' or '..'); "
                                f"refused, not read (use the official {list_file.name})"} for image_id in bad]
        ids = [image_id for image_id in ids if plain_id(image_id)]
        labels = np.zeros((len(ids), len(CLASSES)), dtype=np.int8)
        errors = []
        for i, image_id in enumerate(ids):
            path = base / "Annotations" / f"{image_id}.xml"
            try:
                labels[i] = parse_annotation(path)
            except FileNotFoundError:
                errors.append(f"{image_id}.xml not found")
            except OSError as error:
                errors.append(f"{image_id}.xml: {error.strerror}")
            except ValueError as error:
                errors.append(f"{image_id}.xml: {error}")
        if errors:
            more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
            raise UserError(
                f"{len(errors)} bad annotation file(s) in {base / 'Annotations'}: "
                f"{'; '.join(errors[:3])}{more}; re-extract {TAR_FILES[list_name]}"
            )
        problems.extend(_cross_check(main, list_name, split, ids, labels, set(bad)))
        listed[split] = (ids, Files(base / "JPEGImages", [f"{image_id}.jpg" for image_id in ids]), labels)
    canonical_counts = {
        split: {
            "positives": dict(zip(CLASSES, CANONICAL_POSITIVES[split])),
            "ignored": dict(zip(CLASSES, CANONICAL_IGNORED[split])),
        }
        for split in SPLITS
    }
    info = {"root": str(base.resolve()), "canonical_counts": canonical_counts}
    return assemble("voc2007", CLASSES, listed, options, info=info, problems=problems, refused=refused)


VOC2007 = DatasetSpec(
    name="voc2007",
    load=load,
    version="1",
    description="PASCAL VOC2007: 20 classes, trainval 5,011 / test 4,952; difficult-only classes ignored.",
    canonical=dict(CANONICAL),
    canonical_fingerprint=CANONICAL_FINGERPRINT,
)
