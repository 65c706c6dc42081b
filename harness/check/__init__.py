"""``bench check``: a conformance suite for the components a plugin registers.

Every component gets a short checklist of its contract (``harness/specs.py``), run on the
CPU with tiny inputs so the whole suite takes seconds. Each check catches whatever the
component raises and reports it in one line, so one broken component never hides the rest.
The checks of each kind live in this package's module of that name; ``registry.KINDS`` names
them (its ``checks`` column), and ``run_checks`` dispatches from it.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Callable, Iterable, Iterator

from harness.check.checklist import Checklist, CheckResult, Problem, Skip, Warn, seeded
from harness.check.model import synthetic_info
from harness.errors import UserError
from harness.registry import KINDS, Component, Registry

__all__ = ["CheckResult", "Checklist", "Problem", "Skip", "Warn", "check_function", "run_checks", "seeded",
           "select", "synthetic_info"]


def select(registry: Registry, plugins: Iterable[str], names: Iterable[str]) -> list[tuple[Component, str]]:
    """The components to check, as (component, name to check it under).

    With ``plugins``, only what those plugins registered; with ``names``, only those
    components (``NAME:VARIANT`` picks the variant of a component that takes one).
    """
    registry.check_requested()
    plugins, names = tuple(plugins), tuple(names)
    requested = [p for p in registry.plugins if p.requested]
    for plugin in requested:
        if not plugin.components:
            raise UserError(
                f"plugin {plugin.name!r} registered no components: its register_* hooks must call "
                f"register(...) with a spec (see CONTRIBUTING.md)"
            )
    pool = [c for p in requested for c in p.components] if plugins else [
        c for kind in KINDS for c in registry.components(kind)
    ]
    order = list(KINDS)
    pool.sort(key=lambda c: (order.index(c.kind), c.name))
    if not names:
        return [(c, c.name) for c in pool]
    chosen = []
    for name in names:
        found = [(c, name) for c in pool if c.name == name.split(":", 1)[0]]
        if not found:
            where = f"plugin(s) {', '.join(plugins)}" if plugins else "any loaded plugin"
            known = ", ".join(sorted({c.name for c in pool})) or "none"
            raise UserError(f"no component {name!r} in {where}; checkable components: {known}")
        chosen += found
    return chosen


def check_function(kind: str) -> Callable[[Checklist], None]:
    """The function that runs the checks of ``kind``, named by the ``checks`` column of ``KINDS``."""
    module, _, function = KINDS[kind].checks.partition(":")
    return getattr(importlib.import_module(module), function)


def run_checks(
    registry: Registry, selected: list[tuple[Component, str]], data_root: Path | None = None, loss: str = "bce"
) -> Iterator[list[CheckResult]]:
    """Check each selected component in turn, yielding its results as soon as it is done;
    datasets load from ``data_root``, models' gradients are checked against loss ``loss``."""
    for component, name in selected:
        checklist = Checklist(component, name, registry, data_root, loss)
        checklist.run("unique name", lambda: _unique_name(registry, component))
        check_function(component.kind)(checklist)
        yield checklist.results


def _unique_name(registry: Registry, component: Component) -> None:
    others = [c for c in registry.components(component.kind) if c.name == component.name and c is not component]
    if others:
        builtin = [c for c in others if c.plugin.source == "built-in"]
        if builtin and component.plugin.source != "built-in":
            raise Problem(
                f"{component.kind} {component.name!r} shadows the built-in {component.kind} of that name "
                f"(plugin {builtin[0].plugin.name!r}); every command that uses the name would fail: rename yours"
            )
        where = ", ".join(repr(c.plugin.name) for c in others)
        raise Problem(
            f"{component.kind} {component.name!r} is also registered by plugin {where}; rename one"
        )
