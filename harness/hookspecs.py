"""Hook specifications: the whole plugin API.

Each hook receives a ``register`` callback; call it once per component with a spec from
``harness.specs``. The core keys components by name, so the order in which pluggy calls
plugins never matters, and two components with the same name are an error naming both.
"""

from __future__ import annotations

from typing import Callable

import pluggy

PROJECT = "multilabel_bench"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_datasets(register: Callable) -> None:
    """Register datasets: ``register(DatasetSpec(name=..., load=...))``."""


@hookspec
def register_models(register: Callable) -> None:
    """Register models: ``register(ModelSpec(name=..., build=..., head_prefixes=...))``."""


@hookspec
def register_augmentations(register: Callable) -> None:
    """Register training augmentations: ``register(AugmentationSpec(name=..., augment=...))``."""


@hookspec
def register_losses(register: Callable) -> None:
    """Register training losses: ``register(LossSpec(name=..., loss=...))``."""


@hookspec
def register_fusions(register: Callable) -> None:
    """Register score fusions: ``register(FusionSpec(name=..., fuse=...))``."""


@hookspec
def register_recipes(register: Callable) -> None:
    """Register training recipes: ``register(RecipeSpec(name=..., make_optimizer=...))``."""


@hookspec
def register_loggers(register: Callable) -> None:
    """Register run loggers: ``register(LoggerSpec(name=..., open=...))``."""
