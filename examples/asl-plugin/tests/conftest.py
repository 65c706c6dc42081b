"""A small manifest dataset on disk, rendered by the harness's shapes generator."""

from __future__ import annotations

import json

import numpy as np
import pytest

from plugins.datasets.shapes import CLASSES, render

COUNTS = {"train": 40, "test": 16}


@pytest.fixture(scope="session")
def manifest(tmp_path_factory):
    """(manifest.json path, {split: the N×C int8 labels it declares}).

    Every fifth image has its first class written ``?name`` (ignored, -1), as VOC marks a
    difficult object; the class order is the shapes order, fixed by the manifest.
    """
    root = tmp_path_factory.mktemp("manifest")
    images, labels = [], {}
    for split, count in COUNTS.items():
        rows = np.zeros((count, len(CLASSES)), dtype=np.int8)
        for index in range(count):
            image, classes = render(split, index)
            ignored = classes[:1] if index % 5 == 0 else []
            rows[index, classes] = 1
            rows[index, ignored] = -1
            name = f"{split}{index:03d}.png"
            image.resize((64, 64)).save(root / name)
            images.append({"image": name, "split": split,
                           "labels": [CLASSES[c] for c in classes if c not in ignored],
                           "ignored": [CLASSES[c] for c in ignored]})
        labels[split] = rows
    path = root / "manifest.json"
    path.write_text(json.dumps({"classes": list(CLASSES), "images": images}))
    return path, labels
