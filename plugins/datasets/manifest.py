"""``manifest``: a user's own benchmark from one CSV or JSON file, no plugin needed.

``--data-root`` names the manifest file (or a folder holding ``manifest.csv`` or
``manifest.json``). One record per image:

``image``
    the image file, relative to the manifest's folder. An absolute path, or one whose
    ``..`` leads out of the folder, also works: such images are kept and ``bench data
    verify`` lists each of them as a warning (``info["warnings"]``), which never blocks a
    run, so that a manifest from someone else cannot read files elsewhere unnoticed.
``labels``
    the class names present, separated by ``|`` or ``;``; a name written ``?name`` is
    ignored for that image (label -1, as VOC's "difficult"), not positive.
``ignored`` (optional)
    more ignored class names, same separators; the same as writing ``?name`` in ``labels``.
``split``
    ``train`` or ``test``; a manifest needs both.
``id`` (optional)
    the image id used in scores and fingerprints; default: ``image`` without its extension.

A CSV (UTF-8, with or without the byte-order mark spreadsheet programs write) has these as
header columns (no others, so that a misspelt column is caught). A JSON
file is either a list of such records, or ``{"classes": [...], "images": [...]}`` where
``classes`` fixes the class order and every name used must be one of them; in JSON,
``labels`` and ``ignored`` may also be lists of names. Without ``classes`` the classes are
the sorted union of every name used (ignored ones included). Images keep the file's order,
which is part of the fingerprint.

Every built-in dataset reduces its official layout to the same thing, lists of (id, image
file, label row) per split, and hands them to ``harness.assemble``.
"""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from harness import Dataset, DatasetSpec, UserError, assemble

SPLITS = ("train", "test")
COLUMNS = ("image", "labels", "split")
OPTIONAL_COLUMNS = ("ignored", "id")
_SEPARATORS = re.compile(r"[|;]")


def _names(value: Any, where: str) -> list[str]:
    """Class names from a ``a|b;c`` string or a JSON list of strings."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in _SEPARATORS.split(value) if part.strip()]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return [item.strip() for item in value if item.strip()]
    raise UserError(f"{where}: labels must be a string like 'cat|dog' or a list of names, got {value!r}")


def _find_manifest(data_root: Path | None) -> Path:
    if data_root is None:
        raise UserError("dataset 'manifest' needs --data-root path/to/manifest.csv (or .json)")
    path = Path(data_root).expanduser()
    if path.is_dir():
        for candidate in ("manifest.csv", "manifest.json"):
            if (path / candidate).is_file():
                return path / candidate
        raise UserError(f"{path} holds no manifest.csv or manifest.json; pass the manifest file as --data-root")
    if not path.is_file():
        raise UserError(f"manifest {path} not found; pass an existing .csv or .json file as --data-root")
    if path.suffix.lower() not in (".csv", ".json"):
        raise UserError(f"manifest {path} must end in .csv or .json")
    return path


def _read_csv(path: Path) -> tuple[list[tuple[str, dict]], None]:
    """(where, record) per row; CSV manifests never fix the class list."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            missing = [c for c in COLUMNS if c not in header]
            unknown = [c for c in header if c not in COLUMNS + OPTIONAL_COLUMNS]
            if missing or unknown:
                fault = f"missing column {missing[0]!r}" if missing else f"unknown column {unknown[0]!r}"
                raise UserError(
                    f"{path}: {fault}; the header must be image,labels,split with optional ignored,id"
                )
            rows = []
            for record in reader:
                where = f"{path} line {reader.line_num}"
                if None in record or None in record.values():
                    raise UserError(f"{where}: expected {len(header)} fields as in the header")
                rows.append((where, record))
    except UnicodeDecodeError as error:
        raise UserError(f"{path} is not UTF-8 text ({error.reason}); save it as UTF-8") from None
    except csv.Error as error:
        raise UserError(f"{path} line {reader.line_num + 1}: {error}; save it as plain CSV text") from None
    return rows, None


def _read_json(path: Path) -> tuple[list[tuple[str, dict]], list[str] | None]:
    """(where, record) per image and the explicit class list, if the file gives one."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path} is not valid JSON: {error}") from None
    classes = None
    if isinstance(document, dict):
        unknown = sorted(set(document) - {"classes", "images"})
        if unknown or "images" not in document:
            raise UserError(f'{path}: expected {{"classes": [...], "images": [...]}} or a list of image records')
        classes = document.get("classes")
        if classes is not None and (
            not isinstance(classes, list) or not all(isinstance(c, str) and c for c in classes)
        ):
            raise UserError(f'{path}: "classes" must be a list of non-empty class names')
        if classes is not None and len(set(classes)) != len(classes):
            raise UserError(f'{path}: "classes" lists a name twice')
        document = document["images"]
    if not isinstance(document, list):
        raise UserError(f"{path}: expected a list of image records")
    rows = []
    for index, record in enumerate(document):
        where = f"{path} image #{index}"
        if not isinstance(record, dict):
            raise UserError(f"{where}: expected an object with image, labels and split")
        missing = [c for c in COLUMNS if c not in record]
        unknown = [c for c in record if c not in COLUMNS + OPTIONAL_COLUMNS]
        if missing or unknown:
            fault = f"missing key {missing[0]!r}" if missing else f"unknown key {unknown[0]!r}"
            raise UserError(f"{where}: {fault}; keys are image, labels, split and optional ignored, id")
        rows.append((where, record))
    return rows, classes


def load(data_root: Path | None, options: dict) -> Dataset:
    """Read the manifest named by ``data_root``; see the module docstring for the format."""
    path = _find_manifest(data_root)
    rows, classes = _read_json(path) if path.suffix.lower() == ".json" else _read_csv(path)
    parsed = []
    for where, record in rows:
        image = record["image"]
        split = record["split"]
        if not isinstance(image, str) or not image.strip():
            raise UserError(f"{where}: empty image path")
        if "\0" in image:
            raise UserError(f"{where}: the image path contains a NUL character")
        if split not in SPLITS:
            raise UserError(f"{where}: split {split!r} must be 'train' or 'test'")
        positive, ignored = [], _names(record.get("ignored"), where)
        for label in _names(record["labels"], where):
            name = label.lstrip("?").strip()
            if not name:
                raise UserError(f"{where}: {label!r} names no class; write ?name to ignore a class")
            (ignored if label.startswith("?") else positive).append(name)
        both = set(positive) & set(ignored)
        if both:
            raise UserError(f"{where}: class {sorted(both)[0]!r} is both present and ignored")
        image = image.strip()
        image_id = record.get("id") or Path(image).with_suffix("").as_posix()
        if not isinstance(image_id, str):
            raise UserError(f"{where}: id must be a string, got {image_id!r}")
        parsed.append((where, split, image_id, path.parent / image, positive, ignored, _outside(image)))
    if classes is None:
        classes = sorted({n for *_, positive, ignored, _ in parsed for n in positive + ignored})
    column = {name: j for j, name in enumerate(classes)}
    listed: dict[str, tuple[list[str], list[Path], np.ndarray]] = {}
    seen: dict[str, set[str]] = {split: set() for split in SPLITS}
    for split in SPLITS:
        chosen = [p for p in parsed if p[1] == split]
        if not chosen:
            raise UserError(f"{path} has no '{split}' images; a benchmark needs both a train and a test split")
        labels = np.zeros((len(chosen), len(classes)), dtype=np.int8)
        for row, (where, _, image_id, _, positive, ignored, _) in enumerate(chosen):
            if image_id in seen[split]:
                raise UserError(f"{where}: id {image_id!r} appears twice in the {split} split")
            seen[split].add(image_id)
            for value, names in ((1, positive), (-1, ignored)):
                for label in names:
                    if label not in column:
                        raise UserError(f"{where}: class {label!r} is not in the manifest's \"classes\" list")
                    labels[row, column[label]] = value
        listed[split] = ([p[2] for p in chosen], [p[3] for p in chosen], labels)
    folder = path.parent.resolve()
    warnings = [
        {"split": split, "id": image_id, "file": str(file), "problem": f"outside the manifest's folder {folder}"}
        for split in SPLITS
        for _, in_split, image_id, file, _, _, outside in parsed
        if outside and in_split == split
    ]
    info = {"manifest": str(path.resolve()), "warnings": warnings}
    return assemble("manifest", classes, listed, options, info=info)


def _outside(image: str) -> bool:
    """Whether ``image``, as the manifest writes it, names a file outside the manifest's folder."""
    relative = os.path.normpath(image)
    return os.path.isabs(relative) or relative == os.pardir or relative.startswith(os.pardir + os.sep)


MANIFEST = DatasetSpec(
    name="manifest",
    load=load,
    version="1",
    description="Your own images and labels from a CSV or JSON manifest given as --data-root.",
)
