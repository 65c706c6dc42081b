"""The protocol's recipe, ``sgd-step``: the paper's SGD with a step schedule.

SGD with the protocol's momentum (0.9) and weight decay, the head and backbone at their
own learning rates, every rate multiplied by ``lr_gamma`` (0.1) after each epoch of
``lr_milestones`` (20 under wang2019). The schedule is stepped after every optimizer step,
so the milestones are counted in steps: epoch ``m`` starts at step ``m × steps_per_epoch``,
which changes the rates exactly when the per-epoch step schedule did.
"""

from __future__ import annotations

from harness import RecipeSpec, hookimpl


def make_sgd(param_groups, protocol):
    """SGD over the protocol's groups (each carries its own learning rate)."""
    import torch

    return torch.optim.SGD(param_groups, lr=protocol.lr_head, momentum=protocol.momentum,
                           weight_decay=protocol.weight_decay)


def make_step_schedule(optimizer, protocol, steps_per_epoch):
    """``lr × gamma^(milestones passed)``, the milestones converted from epochs to steps."""
    import torch

    milestones = [milestone * steps_per_epoch for milestone in protocol.lr_milestones]
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=protocol.lr_gamma)


@hookimpl
def register_recipes(register):
    register(RecipeSpec("sgd-step", make_sgd, make_step_schedule, None, "1",
                        "the protocol's SGD (momentum, weight decay) with its step schedule"))
