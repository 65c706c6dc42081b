"""The plumbing of ``bench check``: one ``CheckResult`` per check, and the exceptions a check
raises to fail, skip or warn."""

from __future__ import annotations

import random
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from harness.errors import PluginError, one_line
from harness.registry import Component, Registry
from harness.train import seed_everything


@dataclass(frozen=True)
class CheckResult:
    """One line of the checklist."""

    kind: str
    component: str
    plugin: str
    check: str
    status: str  # "pass", "fail", "warn" (passes, with something to look at) or "skip"
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


class Problem(Exception):
    """A broken contract; the message says what is wrong."""


class Skip(Exception):
    """A check that cannot run here; the message says what it needs."""


class Warn(Exception):
    """A check that passes with a warning; the message starts with ``warning:``."""


class Checklist:
    """Runs the checks of one component and records a ``CheckResult`` per check.

    ``name`` is the name it is checked under (``NAME:VARIANT`` for a variant); ``registry``,
    ``data_root`` and ``loss`` are what ``bench check`` was given, for the kinds that need them.
    """

    def __init__(self, component: Component, name: str, registry: Registry, data_root: Path | None = None,
                 loss: str = "bce"):
        self.component = component
        self.name = name
        self.registry = registry
        self.data_root = data_root
        self.loss = loss
        self.results: list[CheckResult] = []

    def run(self, check: str, function: Callable[[], str | None]) -> bool:
        """Run ``function`` (returning an optional detail); True when it passed."""
        try:
            detail, status = function() or "", "pass"
        except Skip as skip:
            detail, status = f"skipped: {skip}", "skip"
        except Warn as warning:
            detail, status = str(warning), "warn"
        except (Problem, PluginError) as problem:
            detail, status = str(problem), "fail"
        except (Exception, SystemExit, KeyboardInterrupt) as error:  # the component's own failure, reported
            detail, status = one_line(error) if isinstance(error, (SystemExit, KeyboardInterrupt)) else f"raised {one_line(error)}", "fail"
        self.add(check, status, detail)
        return status in ("pass", "warn")

    def add(self, check: str, status: str, detail: str = "") -> None:
        self.results.append(
            CheckResult(self.component.kind, self.name, self.component.plugin.name, check, status, detail)
        )


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed python, numpy and torch as ``bench run`` does, and restore their states after."""
    import torch

    states = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    try:
        seed_everything(seed)
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.random.set_rng_state(states[2])
