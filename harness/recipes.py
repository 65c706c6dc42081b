"""Recipes in the core: building a recipe's optimizer and schedule, recording what they held,
recomputing what they should hold, and the EMA of weights.

The trainer builds the optimizer through ``build`` (every trainable parameter must be in
it, once) and records, before the first step of every epoch, what the optimizer holds
(``held``: its class and every param group's hyperparameters). ``planned`` gives what the
recipe makes on placeholder parameters over the same steps; ``bench leaderboard submit``
compares the two, so a rate, momentum or weight decay changed outside the recipe is
refused, naming the field.
"""

from __future__ import annotations

import collections
import math
import warnings
from typing import Any

from harness.errors import PluginError

DEFAULT_RECIPE = "sgd-step"  # the protocol's recipe: any other is a recorded deviation
GROUP_NAMES = ("head", "backbone")
REL_TOLERANCE = 1e-12


def steps_per_epoch(n_train: int, batch_size: int, world_size: int) -> int:
    """Optimizer steps in one epoch: one per global batch, less a last batch too small to give
    every process an image (as ``Trainer.train_epoch`` drops it)."""
    steps = math.ceil(n_train / batch_size)
    if world_size > 1 and steps and n_train - (steps - 1) * batch_size < world_size:
        steps -= 1
    return steps


def build(component, param_groups: list[dict], protocol, steps: int):
    """``(optimizer, scheduler or None)`` from recipe ``component`` (a registry component) for
    ``param_groups``; refuses an optimizer that leaves out or repeats a parameter, or a
    scheduler that is not a ``torch.optim.lr_scheduler.LRScheduler``."""
    import torch

    spec = component.spec
    optimizer = component.call("make_optimizer", spec.make_optimizer, param_groups, protocol)
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise PluginError(f"{component.label}: make_optimizer returned {type(optimizer).__name__}, not a "
                          "torch.optim.Optimizer")
    given = [id(p) for group in param_groups for p in group["params"]]
    held = [id(p) for group in optimizer.param_groups for p in group["params"]]
    if sorted(given) != sorted(held):
        raise PluginError(f"{component.label}: make_optimizer's optimizer holds {len(held)} parameter(s) where "
                          f"{len(given)} were given; a recipe optimises every trainable parameter, each once")
    scheduler = None
    if spec.make_scheduler is not None:
        scheduler = component.call("make_scheduler", spec.make_scheduler, optimizer, protocol, steps)
        if not isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler):
            raise PluginError(f"{component.label}: make_scheduler returned {type(scheduler).__name__}, not a "
                              "torch.optim.lr_scheduler.LRScheduler")
    return optimizer, scheduler


def _plain(value: Any) -> Any:
    """A hyperparameter as JSON data: tensors as numbers, tuples as lists; anything else by type name."""
    if hasattr(value, "tolist") and callable(value.tolist):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return f"<{type(value).__name__}>"


def class_name(value: Any) -> str:
    cls = type(value)
    return f"{cls.__module__}.{cls.__qualname__}"


def held(optimizer) -> dict[str, Any]:
    """What ``optimizer`` holds now: ``{"class": "torch.optim.sgd.SGD", "param_groups": [{lr,
    momentum, weight_decay, nesterov, betas, eps, ...}]}`` (every key but the parameters)."""
    groups = [{key: _plain(value) for key, value in sorted(group.items()) if key != "params"}
              for group in optimizer.param_groups]
    return {"class": class_name(optimizer), "param_groups": groups}


def planned(component, protocol, steps: int, epochs: int) -> tuple[list[dict[str, Any]], str | None]:
    """What recipe ``component`` holds before the first step of each epoch (``held`` of each),
    made on one placeholder parameter per protocol group, and the scheduler's class name."""
    import torch

    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr, "name": name}
              for name, lr in zip(GROUP_NAMES, (protocol.lr_head, protocol.lr_backbone))]
    optimizer, scheduler = build(component, groups, protocol, steps)
    found = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # stepping a scheduler with no gradient anywhere is intended here
        for _ in range(epochs):
            found.append(held(optimizer))
            for _ in range(steps if scheduler is not None else 0):
                optimizer.step()
                scheduler.step()
    return found, None if scheduler is None else class_name(scheduler)


def difference(recorded: Any, expected: Any, key: str) -> str | None:
    """The first field (``param_groups[0].weight_decay``) in which ``recorded`` differs from
    ``expected``, with both values; floats agree within ``REL_TOLERANCE``."""
    if isinstance(expected, dict) and isinstance(recorded, dict):
        for name in sorted(set(expected) | set(recorded)):
            if name not in recorded or name not in expected:
                where = "is missing" if name not in recorded else "is not made by the recipe"
                return f"{key}.{name} {where}"
            found = difference(recorded[name], expected[name], f"{key}.{name}")
            if found:
                return found
        return None
    if isinstance(expected, list) and isinstance(recorded, list) and len(expected) == len(recorded):
        return next((d for i, (a, b) in enumerate(zip(recorded, expected)) if (d := difference(a, b, f"{key}[{i}]"))),
                    None)
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (recorded, expected))
    if numbers and math.isclose(recorded, expected, rel_tol=REL_TOLERANCE, abs_tol=0.0):
        return None
    if recorded == expected and type(recorded) is type(expected):
        return None
    return f"{key} is {recorded!r}, where the recipe gives {expected!r}"


def plain_state(state: dict) -> dict:
    """A scheduler's ``state_dict`` as plain data for a weights-only checkpoint (Counters as dicts)."""
    return {key: dict(value) if isinstance(value, collections.Counter) else value for key, value in state.items()}


def restore_state(scheduler, state: dict) -> None:
    """Load ``plain_state`` output into ``scheduler``, turning back into Counters what its own state holds as one."""
    template = scheduler.state_dict()
    scheduler.load_state_dict({key: collections.Counter(value) if isinstance(template.get(key), collections.Counter)
                               else value for key, value in state.items()})


class Ema:
    """An exponential moving average of a model's state: after every step, each floating
    point tensor ``e ← d·e + (1 − d)·w``; other tensors (counters) are copied."""

    def __init__(self, model, decay: float):
        self.decay = float(decay)
        self.state = {key: value.detach().clone() for key, value in model.state_dict().items()}

    def update(self, model) -> None:
        import torch

        with torch.no_grad():
            for key, value in model.state_dict().items():
                average = self.state[key]
                if average.is_floating_point():
                    average.mul_(self.decay).add_(value.detach(), alpha=1 - self.decay)
                else:
                    average.copy_(value)
