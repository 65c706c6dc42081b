"""The contracts of what a plugin returns, written once: ``bench check``, ``bench run`` and the
training loop call these, so a component that passes ``bench check`` passes a run.

Each raises one ``PluginError`` line that starts with ``who`` (the component or split at fault).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from harness.errors import PluginError

SPLITS = ("train", "test")  # the splits every benchmark dataset has
LABEL_VALUES = (1, 0, -1)  # positive, negative, ignored


def check_logits_shape(output, batch: int, num_classes: int, who: str, where: str) -> None:
    """A model's output: a floating-point tensor of shape (batch, num_classes), the logits.

    ``where`` says when it was produced, e.g. ``in eval mode for a batch of 2``."""
    import torch

    expected = (batch, num_classes)
    if not isinstance(output, torch.Tensor) or tuple(output.shape) != expected:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise PluginError(f"{who} returned {shape} {where}; expected {expected} logits")
    if not output.is_floating_point():
        raise PluginError(f"{who} returned {output.dtype} logits {where}; logits must be floating point")


def check_logits_finite(output, who: str, where: str) -> None:
    """A model's logits hold no nan or inf."""
    import torch

    if not torch.isfinite(output).all():
        raise PluginError(f"{who} returned non-finite logits (nan or inf) {where}")


def check_logits(output, batch: int, num_classes: int, who: str, where: str) -> None:
    """The whole model-output contract: finite floating-point logits of shape (batch, num_classes)."""
    check_logits_shape(output, batch, num_classes, who, where)
    check_logits_finite(output, who, where)


def check_splits(splits: Sequence[str], who: str) -> None:
    """A dataset has a train and a test split."""
    missing = [s for s in SPLITS if s not in splits]
    if missing:
        raise PluginError(f"{who}: missing split(s) {', '.join(missing)}; has {', '.join(sorted(splits)) or 'none'}; "
                          f"a benchmark needs {' and '.join(SPLITS)}")


def check_labels(labels, num_classes: int, who: str) -> None:
    """A split's labels: an int8 numpy array of N×num_classes (one column per class) holding
    1 (positive), 0 (negative) or -1 (ignored)."""
    if not isinstance(labels, np.ndarray) or labels.dtype != np.int8:
        raise PluginError(f"{who}: labels must be an int8 numpy array, got {getattr(labels, 'dtype', type(labels).__name__)}")
    if labels.ndim != 2 or labels.shape[1] != num_classes:
        raise PluginError(f"{who}: labels must be N×{num_classes} (one column per class), got {labels.shape}")
    values = set(np.unique(labels).tolist()) - set(LABEL_VALUES)
    if values:
        raise PluginError(f"{who}: label values must be 1, 0 or -1, found {sorted(values)}")
