"""A small plugin for fast end-to-end tests: a tiny dataset, a tiny CNN, and test augmentations.

``tiny`` renders 96 train and 48 test images from the ``shapes`` generator into the
``--data-root`` folder, and marks some labels ignored (-1) like VOC's difficult objects.
"""

from __future__ import annotations

import csv
import os
import signal
from pathlib import Path

import numpy as np

from harness import AugmentationSpec, Dataset, DatasetSpec, ModelSpec, Split, hookimpl
from plugins.augmentations import augment_flip
from plugins.datasets.shapes import CLASSES, render

SIZES = {"train": 96, "test": 48}


def load_tiny(data_root: Path | None, options: dict) -> Dataset:
    root = Path(data_root)
    if not (root / "labels.csv").is_file():
        root.mkdir(parents=True, exist_ok=True)
        rows = []
        for split, n in SIZES.items():
            for i in range(n):
                image, classes = render(split, i)
                image_id = f"{split}{i:03d}"
                image.resize((48, 48)).save(root / f"{image_id}.png")
                label = [int(c in classes) for c in range(len(CLASSES))]
                if i % 5 == 0 and classes:
                    label[classes[0]] = -1  # present, but only as a "difficult" object
                rows.append([split, image_id, *label])
        with open(root / "labels.csv", "w", newline="") as stream:
            csv.writer(stream).writerows(rows)
    ids, labels = {s: [] for s in SIZES}, {s: [] for s in SIZES}
    with open(root / "labels.csv", newline="") as stream:
        for split, image_id, *values in csv.reader(stream):
            ids[split].append(image_id)
            labels[split].append([int(v) for v in values])
    splits = {
        s: Split(ids[s], [root / f"{i}.png" for i in ids[s]], np.array(labels[s], dtype=np.int8)) for s in SIZES
    }
    return Dataset("tiny", CLASSES, splits)


def build_tiny_cnn(num_classes: int, pretrained: bool):
    import torch.nn as nn

    from harness.weights import load_state_dict

    model = nn.Sequential()
    model.add_module("features", nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2),
    ))
    model.add_module("head", nn.Linear(16, num_classes))
    if pretrained:
        model.features.load_state_dict(load_state_dict("tiny-cnn-features.pth"))
    return model


def build_tiny_plain(num_classes: int, pretrained: bool):
    """No batch norm and no dropout: the same function of the data in one process or several."""
    import torch.nn as nn

    model = nn.Sequential()
    model.add_module("features", nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveMaxPool2d(1), nn.Flatten(),
    ))
    model.add_module("head", nn.Linear(16, num_classes))
    return model


def augment_recording(images, targets, epoch, generator):
    """flip; appends the targets it sees to $TINY_RECORD_TARGETS, and SIGKILLs itself at $TINY_KILL_AT_EPOCH."""
    if os.environ.get("TINY_RECORD_TARGETS"):
        with open(os.environ["TINY_RECORD_TARGETS"], "ab") as stream:
            np.save(stream, targets.cpu().numpy())
    if os.environ.get("TINY_KILL_AT_EPOCH") == str(epoch):
        os.kill(os.getpid(), signal.SIGKILL)
    return augment_flip(images, targets, epoch, generator)


@hookimpl
def register_datasets(register):
    register(DatasetSpec(name="tiny", load=load_tiny, version="1"))


@hookimpl
def register_models(register):
    register(ModelSpec(name="tiny-cnn", build=build_tiny_cnn, version="1", head_prefixes=("head",)))
    register(ModelSpec(name="tiny-plain", build=build_tiny_plain, version="1", head_prefixes=("head",)))


@hookimpl
def register_augmentations(register):
    register(AugmentationSpec(name="recording-flip", augment=augment_recording, version="1"))
