"""Builders of tiny datasets in each official on-disk layout, for the dataset tests.

Every image is a distinct 16×16 noise JPEG (so no two files share content unless a test
wants them to). Each builder returns what a correct loader must produce.
"""

from __future__ import annotations

import csv
import json
import os
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

FIXTURES = Path(__file__).parent / "fixtures"
VOC_DEVKIT_TO_LABEL = {1: 1, -1: 0, 0: -1}


def write_jpeg(path: Path, key: str) -> Path:
    """A 16×16 noise JPEG whose pixels depend only on ``key``."""
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(path, "JPEG", quality=90)
    return path


class Untouchable:
    """A real JPEG (or a file of ``content``) outside a data root that tells whether anything has read it since.

    Its access time is set well before its modification time, so any read moves it, also on
    file systems mounted ``relatime``; ``reads_are_seen`` says whether this one updates it at all.
    """

    def __init__(self, path: Path, content: str | None = None):
        if content is None:
            write_jpeg(path, path.name)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
        self.path = path
        modified = path.stat().st_mtime_ns
        os.utime(path, ns=(modified - 10**12, modified))
        self.atime = path.stat().st_atime_ns

    def was_read(self) -> bool:
        return self.path.stat().st_atime_ns != self.atime


def reads_are_seen(folder: Path) -> bool:
    """Whether reading a file in ``folder`` moves an access time set before its modification time."""
    probe = Untouchable(folder / "atime-probe.jpg")
    probe.path.read_bytes()
    seen = probe.was_read()
    probe.path.unlink()
    return seen


def truncate(path: Path) -> None:
    """Cut the last quarter of a file, as an interrupted download leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - len(data) // 4])


# -- VOC2007 ---------------------------------------------------------------------------


def voc_sample() -> tuple[list[str], dict[str, list[str]], dict[str, np.ndarray]]:
    """Classes, ids and devkit-encoded labels (1 / -1 / 0 difficult) of the real 40-image
    sample in ``fixtures/voc2007_sample.csv``, per devkit split (trainval, test)."""
    with (FIXTURES / "voc2007_sample.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))
    classes = rows[0][2:]
    ids: dict[str, list[str]] = {"trainval": [], "test": []}
    values: dict[str, list[list[int]]] = {"trainval": [], "test": []}
    for split, image_id, *row in rows[1:]:
        ids[split].append(image_id)
        values[split].append([int(v) for v in row])
    return classes, ids, {split: np.array(v) for split, v in values.items()}


def voc_annotation(classes: list[str], devkit_row: np.ndarray, extra_difficult: bool) -> str:
    """An ``Annotations/<id>.xml`` whose objects give ``devkit_row``; with ``extra_difficult``
    a present class also gets a difficult object (which must not make it ignored)."""
    objects = []
    for name, value in zip(classes, devkit_row):
        if value == 1:
            objects.append((name, 0))
            if extra_difficult:
                objects.append((name, 1))
                extra_difficult = False
        elif value == 0:
            objects.append((name, 1))
    body = "".join(
        f"\t<object>\n\t\t<name>{name}</name>\n\t\t<pose>Unspecified</pose>\n\t\t<truncated>0</truncated>\n"
        f"\t\t<difficult>{difficult}</difficult>\n\t\t<bndbox><xmin>1</xmin><ymin>1</ymin>"
        f"<xmax>15</xmax><ymax>15</ymax></bndbox>\n\t</object>\n"
        for name, difficult in objects
    )
    return (
        "<annotation>\n\t<folder>VOC2007</folder>\n\t<filename>x.jpg</filename>\n"
        "\t<size><width>16</width><height>16</height><depth>3</depth></size>\n"
        f"\t<segmented>0</segmented>\n{body}</annotation>\n"
    )


def write_voc(root: Path, per_class_files: bool = True) -> dict:
    """The sample in ``root/VOCdevkit/VOC2007``; returns classes, ids and expected labels per
    harness split (train = trainval), and ``base`` (the VOC2007 folder)."""
    classes, ids, devkit = voc_sample()
    base = root / "VOCdevkit" / "VOC2007"
    main = base / "ImageSets" / "Main"
    main.mkdir(parents=True)
    (base / "Annotations").mkdir()
    for split in ("trainval", "test"):
        (main / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids[split]))
        for k, (image_id, row) in enumerate(zip(ids[split], devkit[split])):
            write_jpeg(base / "JPEGImages" / f"{image_id}.jpg", image_id)
            (base / "Annotations" / f"{image_id}.xml").write_text(voc_annotation(classes, row, k % 3 == 0))
        if per_class_files:
            for j, name in enumerate(classes):
                lines = "".join(f"{i} {v:2d}\n" for i, v in zip(ids[split], devkit[split][:, j]))
                (main / f"{name}_{split}.txt").write_text(lines)
    to_label = np.vectorize(VOC_DEVKIT_TO_LABEL.get)
    return {
        "base": base,
        "classes": classes,
        "ids": {"train": ids["trainval"], "test": ids["test"]},
        "labels": {"train": to_label(devkit["trainval"]), "test": to_label(devkit["test"])},
    }


# -- COCO 2014 -------------------------------------------------------------------------

COCO_CATEGORIES = [(1, "person"), (2, "bicycle"), (3, "car"), (18, "dog"), (90, "toothbrush")]


def write_coco(root: Path) -> dict:
    """``annotations/instances_{train,val}2014.json`` and the image folders: non-contiguous
    category ids listed out of order, images listed out of id order, crowd regions, and
    images without any instance (which the loader drops)."""
    layout = {
        # split: [(image id, category ids annotated, crowd category ids)]
        "train2014": [(309, [1, 18], []), (9, [3], [1]), (25, [], []), (77, [90, 90, 2], []), (400, [], [])],
        "val2014": [(42, [2], []), (8, [], []), (1000, [], [3])],
    }
    (root / "annotations").mkdir(parents=True)
    categories = [{"supercategory": "x", "id": i, "name": n} for i, n in reversed(COCO_CATEGORIES)]
    column = {category_id: j for j, (category_id, _) in enumerate(COCO_CATEGORIES)}
    expected: dict = {"classes": [n for _, n in COCO_CATEGORIES], "ids": {}, "labels": {}, "root": root}
    for folder, images in layout.items():
        records, annotations = [], []
        for image_id, plain, crowd in images:
            file_name = f"COCO_{folder}_{image_id:012d}.jpg"
            write_jpeg(root / folder / file_name, file_name)
            records.append({"id": image_id, "file_name": file_name, "width": 16, "height": 16})
            for category_id, is_crowd in [(c, 0) for c in plain] + [(c, 1) for c in crowd]:
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category_id,
                                    "iscrowd": is_crowd, "bbox": [0, 0, 4, 4], "area": 16.0})
        document = {"info": {}, "images": records, "annotations": annotations, "categories": categories}
        (root / "annotations" / f"instances_{folder}.json").write_text(json.dumps(document))
        kept = sorted((i, plain + crowd) for i, plain, crowd in images if plain or crowd)
        labels = np.zeros((len(kept), len(COCO_CATEGORIES)), dtype=np.int8)
        for row, (_, present) in enumerate(kept):
            labels[row, [column[c] for c in present]] = 1
        split = "train" if folder == "train2014" else "test"
        expected["ids"][split] = [str(i) for i, _ in kept]
        expected["labels"][split] = labels
    return expected


# -- NUS-WIDE --------------------------------------------------------------------------

NUSWIDE_CONCEPTS = ["animal", "sky", "water", "person"]


def write_nuswide(root: Path, concepts_in_folder: bool = False) -> dict:
    """The release layout under ``root``: backslash image lists, ``Imagelist.txt`` with its
    ``C:\\ImageData\\Flickr\\`` prefix, per-concept label files, one image without labels."""
    entries = {
        "Train": [("actor", "0001_2124494179", [0, 1]), ("beach", "0003_515093458", [1, 2]),
                  ("beach", "0010_313472315", []), ("zebra", "0100_204421521", [0])],
        "Test": [("actor", "0007_2177046315", [3]), ("sunset", "0042_85432222", [1, 2, 3])],
    }
    concepts_file = root / "ConceptsList" / "Concepts81.txt" if concepts_in_folder else root / "Concepts81.txt"
    concepts_file.parent.mkdir(parents=True, exist_ok=True)
    concepts_file.write_text("".join(f"{c}\n" for c in NUSWIDE_CONCEPTS))
    (root / "ImageList").mkdir()
    labels_dir = root / "Groundtruth" / "TrainTestLabels"
    labels_dir.mkdir(parents=True)
    expected: dict = {"classes": NUSWIDE_CONCEPTS, "ids": {}, "labels": {}, "files": {}}
    everything = []
    for suffix, rows in entries.items():
        lines = [f"{folder}\\{stem}.jpg" for folder, stem, _ in rows]
        everything += [f"C:\\ImageData\\Flickr\\{line}" for line in lines]
        (root / "ImageList" / f"{suffix}Imagelist.txt").write_text("\r\n".join(lines) + "\r\n")
        labels = np.zeros((len(rows), len(NUSWIDE_CONCEPTS)), dtype=np.int8)
        for row, (_, _, present) in enumerate(rows):
            labels[row, present] = 1
        for j, concept in enumerate(NUSWIDE_CONCEPTS):
            (labels_dir / f"Labels_{concept}_{suffix}.txt").write_text("".join(f"{v}\n" for v in labels[:, j]))
        split = "train" if suffix == "Train" else "test"
        expected["ids"][split] = [f"{folder}/{stem}" for folder, stem, _ in rows]
        expected["files"][split] = [root / "Flickr" / folder / f"{stem}.jpg" for folder, stem, _ in rows]
        expected["labels"][split] = labels
        for path in expected["files"][split]:
            write_jpeg(path, path.name)
    (root / "ImageList" / "Imagelist.txt").write_text("\n".join(everything) + "\n")
    return expected


# -- manifest --------------------------------------------------------------------------


def write_manifest_images(root: Path, names: list[str]) -> None:
    for name in names:
        write_jpeg(root / name, name)


def write_csv_manifest(path: Path, rows: list[dict], header: list[str] | None = None) -> Path:
    """A CSV manifest with ``header`` (default: the keys of the first row)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header or list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path
