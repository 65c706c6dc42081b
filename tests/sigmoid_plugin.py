"""A model that ends in a sigmoid, so its run stores probabilities instead of logits: what
``bench leaderboard submit --scores probabilities`` is for. Used beside tests/tiny_plugin.py
(its ``tiny`` dataset); it imports nothing from there, as a submitted plugin may not."""

from __future__ import annotations

from harness import ModelSpec, hookimpl


def build_tiny_sigmoid(num_classes: int, pretrained: bool):
    """A small CNN whose forward ends in ``torch.sigmoid``: outputs in (0, 1)."""
    import torch.nn as nn

    model = nn.Sequential()
    model.add_module("features", nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveMaxPool2d(1), nn.Flatten(),
    ))
    model.add_module("head", nn.Linear(16, num_classes))
    model.add_module("sigmoid", nn.Sigmoid())
    return model


@hookimpl
def register_models(register):
    register(ModelSpec(name="tiny-sigmoid", build=build_tiny_sigmoid, version="1", head_prefixes=("head",)))
