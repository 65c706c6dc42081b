"""Components by name, as ``bench run`` makes them: ``create_model`` (as timm's) and ``load_dataset``.

Both go through the same registry, plugin wrapper and checks as a run, so a notebook or a
plugin's own tests get exactly the model and the data a run would train on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from harness.registry import Registry
from harness.specs import Dataset


def create_model(name: str, num_classes: int, *, pretrained: str = "none", dataset: Dataset | None = None,
                 plugins: Iterable[str] = ()):
    """The model ``name`` (``resnet101``, ``timm:convnext_tiny``, a plugin's) with ``num_classes``
    outputs. ``pretrained`` is ``none``, ``imagenet`` (files found by ``harness.weights``, never
    downloaded) or a weights file; ``dataset`` gives a model that asks for it its training labels."""
    from harness import runner

    component = Registry(tuple(plugins)).get("model", name)
    if pretrained not in ("imagenet", "none"):
        pretrained = str(Path(pretrained).expanduser().resolve())
    info = None
    if dataset is not None:
        from harness.data import fingerprint

        info = runner.dataset_info(dataset, fingerprint(dataset))
    model, _, _ = runner.build_model(component, name, num_classes, pretrained, info)
    return model


def load_dataset(name: str, data_root: str | Path | None = None, *, skip_missing: bool = False,
                 plugins: Iterable[str] = ()) -> Dataset:
    """The dataset ``name`` loaded and checked as ``bench run`` loads it (both splits, labels of
    1, 0, -1, no problems unless ``skip_missing`` leaves missing files out)."""
    from harness import runner

    component = Registry(tuple(plugins)).get("dataset", name)
    return runner.load_dataset(component, str(data_root) if data_root is not None else None, skip_missing)
