"""Training protocols as frozen, versioned, hashed data.

A protocol fixes everything about training and scoring that a method may not change. Its
``hash`` covers every field, so two results with the same hash were trained under the same
rules; a run that overrides a field records the deviation and carries the original hash.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from harness.errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Protocol:
    """Every rule of a training protocol (docs/PROTOCOL.md gives each field and the paper's value)."""

    name: str
    version: int
    description: str
    init: str  # "imagenet": torchvision ImageNet-1k V1 weights; "none": random init
    epochs: int
    batch_size: int  # global, over every process
    optimizer: str
    lr_head: float
    lr_backbone: float
    momentum: float
    weight_decay: float
    lr_milestones: tuple[int, ...]  # epochs after which every rate is multiplied by lr_gamma
    lr_gamma: float
    loss: str  # the loss component trained with (``bench run --loss`` picks another: a deviation)
    sizes: tuple[int, ...]  # allowed square input sizes
    default_size: int
    test_transform: str
    crop_source: str  # "original": random-resized crops are sampled in the original image's pixels
    normalize_mean: tuple[float, float, float]
    normalize_std: tuple[float, float, float]
    ignored_labels_in_training: str  # VOC "difficult": trained as "positive"
    mixup_epochs: str  # "even": mixup on epochs 0, 2, 4, ... (counted from 0)
    evaluation: str  # "last_epoch": score the test split once, after the last epoch
    default_augmentation: str
    default_model: str

    def fields(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @property
    def hash(self) -> str:
        """sha256 (first 16 hex digits) of the canonical JSON of every field but ``description``
        (rewording the prose changes no rule)."""
        rules = {key: value for key, value in self.fields().items() if key != "description"}
        canonical = json.dumps(rules, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        record = self.fields()
        for key, value in record.items():
            if isinstance(value, tuple):
                record[key] = list(value)
        record["hash"] = self.hash
        return record


WANG2019 = Protocol(
    name="wang2019",
    version=2,
    description="Wang, Jia & Breckon, ICIP 2019: the paper's training protocol (docs/PROTOCOL.md)",
    init="imagenet",
    epochs=40,
    batch_size=16,
    optimizer="sgd",
    lr_head=0.1,
    lr_backbone=0.01,
    momentum=0.9,
    weight_decay=0.0,
    lr_milestones=(20,),
    lr_gamma=0.1,
    loss="bce",
    sizes=(384, 448, 512),
    default_size=448,
    test_transform="resize_square",
    crop_source="original",
    normalize_mean=IMAGENET_MEAN,
    normalize_std=IMAGENET_STD,
    ignored_labels_in_training="positive",
    mixup_epochs="even",
    evaluation="last_epoch",
    default_augmentation="flip",
    default_model="resnet101",
)

SMOKE = dataclasses.replace(
    WANG2019,
    name="smoke",
    version=2,
    description="wang2019 scaled for a CPU: a small CNN from scratch, 64px images, 20 epochs; never mixed with wang2019 rows",
    init="none",
    epochs=20,
    batch_size=32,
    lr_head=0.05,
    lr_backbone=0.05,
    lr_milestones=(15,),
    sizes=(32, 48, 64, 96, 128),
    default_size=64,
    default_model="smallcnn",
)

PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (WANG2019, SMOKE)}


def get_protocol(name: str) -> Protocol:
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise UserError(
            f"unknown protocol {name!r}; known: {', '.join(sorted(PROTOCOLS))}"
        ) from None


def protocol_by_hash(protocol_hash: str) -> Protocol | None:
    return next((p for p in PROTOCOLS.values() if p.hash == protocol_hash), None)
