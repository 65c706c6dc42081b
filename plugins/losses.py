"""The protocol's loss: sigmoid cross-entropy averaged over classes and images (paper eq. 1).

``BCEWithLogitsLoss()`` with its default mean reduction, which is what the authors' code
trained with (the paper's equation sums over classes; the mean sets the effective
learning rate, so the protocol uses it: docs/PROTOCOL.md, ``loss``).
"""

from __future__ import annotations

from harness import LossSpec, hookimpl


def binary_cross_entropy(logits, targets):
    """``mean over b, c of -[y log σ(x) + (1 - y) log(1 - σ(x))]``, computed stably from logits."""
    import torch.nn.functional as F

    return F.binary_cross_entropy_with_logits(logits, targets)


@hookimpl
def register_losses(register):
    register(LossSpec("bce", binary_cross_entropy, "1", "sigmoid cross-entropy, mean over classes and images"))
