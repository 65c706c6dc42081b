"""A small manifest dataset on disk, rendered by the harness's shapes generator."""

from __future__ import annotations

import json

import pytest

from plugins.datasets.shapes import CLASSES, render

COUNTS = {"train": 40, "test": 16}


@pytest.fixture(scope="session")
def manifest(tmp_path_factory):
    """The path of a manifest.json of 40 training and 16 test images of 64×64."""
    root = tmp_path_factory.mktemp("manifest")
    images = []
    for split, count in COUNTS.items():
        for index in range(count):
            image, classes = render(split, index)
            name = f"{split}{index:03d}.png"
            image.resize((64, 64)).save(root / name)
            images.append({"image": name, "split": split, "labels": [CLASSES[c] for c in classes]})
    path = root / "manifest.json"
    path.write_text(json.dumps({"classes": list(CLASSES), "images": images}))
    return path
