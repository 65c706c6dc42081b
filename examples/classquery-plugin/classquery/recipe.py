"""The method's training recipe, declared rather than done behind the harness's back: AdamW,
a one-cycle learning rate over the whole run, and an EMA of the weights that is scored.

The head starts at 1e-3 and the backbone at 1e-4 (a tenth, as the protocol's groups do),
weight decay 1e-2; the rates rise over the first 20% of the steps and anneal by cosine.
"""

from __future__ import annotations

RATES = {"head": 1e-3, "backbone": 1e-4}
WEIGHT_DECAY = 1e-2
WARMUP = 0.2
EMA_DECAY = 0.99


def make_optimizer(param_groups, protocol):
    """AdamW over the protocol's head and backbone groups, at this recipe's rates."""
    import torch

    groups = [{**group, "lr": RATES[group["name"]]} for group in param_groups]
    return torch.optim.AdamW(groups, weight_decay=WEIGHT_DECAY)


def make_scheduler(optimizer, protocol, steps_per_epoch):
    """One cycle over every step of the run, peaking at each group's rate."""
    import torch

    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=[group["lr"] for group in optimizer.param_groups],
        total_steps=protocol.epochs * steps_per_epoch, pct_start=WARMUP)
