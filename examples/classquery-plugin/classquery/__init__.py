"""multilabel-bench glue for the class-query method: registers its model and its recipe.

Everything method-specific lives in ``upstream/`` (the vendored layout) and ``recipe.py``;
this file only tells the harness about them, with relative imports so that the package
loads the same way installed (entry point ``classquery``) or as ``--plugin path/to/classquery/``.
"""

from __future__ import annotations

import functools

from harness import ModelSpec, RecipeSpec, hookimpl

from . import recipe

__version__ = "0.1.0"
BACKBONES = ("resnet18", "resnet50", "resnet101")


def build(num_classes: int, pretrained: bool, *, backbone: str):
    """The ResNet trunk with a class-query head (``network.ClassQueryNet``)."""
    from .network import ClassQueryNet

    return ClassQueryNet(backbone, num_classes, pretrained)


@hookimpl
def register_models(register):
    for backbone in BACKBONES:
        register(ModelSpec(name=f"classquery-{backbone}", version=__version__,
                           build=functools.partial(build, backbone=backbone), head_prefixes=("head",),
                           backbone=backbone, description=f"class-query attention head on {backbone}"))


@hookimpl
def register_recipes(register):
    register(RecipeSpec(name="classquery-adamw", make_optimizer=recipe.make_optimizer,
                        make_scheduler=recipe.make_scheduler, ema_decay=recipe.EMA_DECAY, version=__version__,
                        description="AdamW 1e-3/1e-4, one-cycle rates, EMA 0.99 of the weights"))
