"""``bench check`` for recipes: the optimizer and schedule for a protocol, finite and repeatable."""

from __future__ import annotations

import numpy as np

from harness.check.checklist import Checklist, Problem, Skip

RECIPE_PROTOCOL = "wang2019"
RECIPE_STEPS = 3


def check_recipe(checklist: Checklist) -> None:
    """Make the optimizer and schedule for the wang2019 protocol on placeholder groups and step
    them through every epoch: finite rates, and the same rates when made again."""
    from harness import recipes
    from harness.protocol import get_protocol

    protocol = get_protocol(RECIPE_PROTOCOL)
    component = checklist.component
    made: list = []

    def builds() -> str:
        plan, scheduler = recipes.planned(component, protocol, RECIPE_STEPS, protocol.epochs)
        made.append(plan)
        ema = component.spec.ema_decay
        return (f"{plan[0]['class']}, schedule {scheduler or 'none'}, EMA {ema if ema is not None else 'none'}, "
                f"{len(plan[0]['param_groups'])} param groups")

    def finite_rates() -> str:
        if not made:
            raise Skip("needs an optimizer")
        rates = [group["lr"] for epoch in made[0] for group in epoch["param_groups"]]
        bad = [rate for rate in rates if not isinstance(rate, (int, float)) or not np.isfinite(rate) or rate < 0]
        if bad:
            raise Problem(f"learning rate {bad[0]!r} over {protocol.epochs} epochs of {RECIPE_STEPS} steps; rates are "
                          "finite and not negative")
        return f"rates from {max(rates):.3g} to {min(rates):.3g} over {protocol.epochs} epochs of {RECIPE_STEPS} steps"

    def repeatable() -> None:
        if not made:
            raise Skip("needs an optimizer")
        again, _ = recipes.planned(component, protocol, RECIPE_STEPS, protocol.epochs)
        found = recipes.difference(again, made[0], "param_groups")
        if found:
            raise Problem(f"made twice, the recipe differs: {found}; a recipe's rates depend only on the protocol "
                          "and the step (bench leaderboard submit recomputes them)")

    checklist.run(f"makes an optimizer for the {RECIPE_PROTOCOL} groups", builds)
    checklist.run("finite learning rates at every step", finite_rates)
    checklist.run("made again, the same hyperparameters", repeatable)
