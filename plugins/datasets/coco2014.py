"""``coco2014``: MS-COCO 2014 as a multi-label benchmark, from the official download layout.

``--data-root`` is the folder holding ``annotations/instances_{train,val}2014.json``,
``train2014/`` and ``val2014/`` (or its ``annotations`` folder, or a folder holding it as
``coco2014`` or ``coco``). Splits: train = train2014, test = val2014, as in the multi-label
literature. A class is present in an image when any instance of it is annotated there, crowd
regions included; images without any instance are dropped (82,783 → 82,081 and
40,504 → 40,137). The 80 classes are in category-id order (ids run 1..90 with gaps); image
ids are COCO's, in increasing order.

An image whose ``file_name`` leads outside its image folder (``../``, an absolute path, see
``harness.leaves_folder``) is refused: a problem naming the instances file, never opened.
The two instances files (about 500 MB with their polygons) are parsed once per content and
kept in the annotation cache (``harness.annotations``); later loads read the arrays.
"""

from __future__ import annotations

import gc
import json
from pathlib import Path

import numpy as np

from harness import Dataset, DatasetSpec, Files, UserError, assemble, leaves_folder
from harness.annotations import pack_strings, parsed, unpack_strings
from harness.datasets import quoted

SPLITS = {"train": "train2014", "test": "val2014"}
CANONICAL = {"train": 82081, "test": 40137}
PARSE_VERSION = "1"  # of what parse() returns; bump it when that changes, so cached parses are redone


def find_coco2014(data_root: Path | None) -> Path:
    """The folder holding ``annotations/``, ``train2014/`` and ``val2014/``."""
    if data_root is None:
        raise UserError("dataset 'coco2014' needs --data-root: the folder holding annotations/, train2014/ and val2014/")
    root = Path(data_root).expanduser()
    candidates = [root, root / "coco2014", root / "coco"]
    if root.name == "annotations":
        candidates.insert(0, root.parent)
    for candidate in candidates:
        if (candidate / "annotations").is_dir() and any(
            (candidate / "annotations" / f"instances_{folder}.json").is_file() for folder in SPLITS.values()
        ):
            return candidate
    raise UserError(
        f"{root / 'annotations' / 'instances_train2014.json'} not found; pass the folder where the COCO 2014 "
        "annotations and the train2014/ and val2014/ image folders were extracted"
    )


def read_instances(path: Path) -> tuple[list[tuple[int, str]], list[tuple[int, str]], dict[int, set[int]]]:
    """Categories (id, name) sorted by id, images (id, file_name) sorted by id, and the
    category ids annotated in each image, from one ``instances_*.json``."""
    if not path.is_file():
        raise UserError(f"{path} not found; extract annotations_trainval2014.zip into {path.parent.parent}")
    collecting = gc.isenabled()
    gc.disable()  # parsed JSON holds no cycles; collecting while millions of objects appear costs a third of the time
    try:
        with path.open("rb") as handle:
            document = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path} is not valid JSON ({error}); download annotations_trainval2014.zip again") from None
    finally:
        if collecting:
            gc.enable()
    try:
        categories = sorted((int(c["id"]), str(c["name"])) for c in document["categories"])
        images = sorted((int(image["id"]), str(image["file_name"])) for image in document["images"])
        present: dict[int, set[int]] = {}
        for annotation in document["annotations"]:
            present.setdefault(int(annotation["image_id"]), set()).add(int(annotation["category_id"]))
    except (KeyError, TypeError, ValueError) as error:
        detail = f"missing key {error}" if isinstance(error, KeyError) else str(error)
        raise UserError(f"{path} is not a COCO instances file ({detail}); download annotations_trainval2014.zip again") from None
    known_images = {image_id for image_id, _ in images}
    known_categories = {category_id for category_id, _ in categories}
    for image_id, category_ids in present.items():
        if image_id not in known_images:
            raise UserError(f"{path}: an annotation refers to image id {image_id}, which is not in its images list")
        unknown = category_ids - known_categories
        if unknown:
            raise UserError(f"{path}: image {image_id} is annotated with unknown category id {min(unknown)}")
    return categories, images, present


def parse(annotations: Path) -> dict[str, np.ndarray]:
    """Both instances files as arrays: the categories, and per split the ids, file names and
    label rows of the images with instances, and how many images had none."""
    instances = {split: read_instances(annotations / f"instances_{folder}.json") for split, folder in SPLITS.items()}
    categories = instances["train"][0]
    if instances["test"][0] != categories:
        raise UserError(
            f"{annotations}: instances_train2014.json and instances_val2014.json list different categories; "
            "use the official 2014 files"
        )
    column = {category_id: j for j, (category_id, _) in enumerate(categories)}
    arrays = {}
    arrays["category_names"], arrays["category_ends"] = pack_strings([name for _, name in categories])
    for split, (_, images, present) in instances.items():
        kept = [(image_id, file_name) for image_id, file_name in images if image_id in present]
        labels = np.zeros((len(kept), len(categories)), dtype=np.int8)
        for row, (image_id, _) in enumerate(kept):
            labels[row, [column[c] for c in present[image_id]]] = 1
        arrays[f"{split}_ids"] = np.array([image_id for image_id, _ in kept], dtype=np.int64)
        arrays[f"{split}_files"], arrays[f"{split}_ends"] = pack_strings([file_name for _, file_name in kept])
        arrays[f"{split}_labels"] = labels
        arrays[f"{split}_dropped"] = np.int64(len(images) - len(kept))
    return arrays


def load(data_root: Path | None, options: dict) -> Dataset:
    """Read both instances files (parsed once per content); see the module docstring."""
    root = find_coco2014(data_root)
    annotations = root / "annotations"
    files = [annotations / f"instances_{folder}.json" for folder in SPLITS.values()]
    arrays = parsed("coco2014", PARSE_VERSION, root, files, lambda: parse(annotations))
    listed = {}
    refused = []
    for (split, folder), source in zip(SPLITS.items(), files):
        ids = [str(image_id) for image_id in arrays[f"{split}_ids"].tolist()]
        names = unpack_strings(arrays[f"{split}_files"], arrays[f"{split}_ends"])
        labels = arrays[f"{split}_labels"]
        bad = [i for i, name in enumerate(names) if leaves_folder(name)]
        refused += [{"split": split, "id": ids[i], "file": str(source),
                     "problem": f"file_name {quoted(names[i])} leads outside {folder}/; refused, not read "
                                f"(use the official {source.name})"} for i in bad]
        if bad:
            keep = np.setdiff1d(np.arange(len(ids)), bad)
            ids, names, labels = [ids[i] for i in keep], [names[i] for i in keep], labels[keep]
        listed[split] = (ids, Files(root / folder, names), labels)
    dropped = {split: int(arrays[f"{split}_dropped"]) for split in SPLITS}
    info = {"root": str(root.resolve()), "dropped_without_instances": dropped}
    classes = unpack_strings(arrays["category_names"], arrays["category_ends"])
    return assemble("coco2014", classes, listed, options, info=info, refused=refused)


COCO2014 = DatasetSpec(
    name="coco2014",
    load=load,
    version="1",
    description="MS-COCO 2014: 80 classes, train2014 82,081 / val2014 40,137 images with instances.",
    canonical=dict(CANONICAL),
)
