"""Run loggers: a run's curves sent where a lab looks (CSV, TensorBoard, W&B, MLflow).

Loggers are components (``LoggerSpec``, hook ``register_loggers``) chosen with
``bench run --logger NAME`` (repeatable). They only watch: nothing they do reaches the
trainer's numbers, and a logger that raises is reported in one line on stderr and dropped
while the run goes on. What they receive:

- ``log_step(step, metrics)``: every training step, ``step`` counted from 0 over the whole
  run (``epoch × steps per epoch + step in epoch``), ``metrics`` = ``loss`` (the batch's
  mean training loss) and ``lr/<group>`` (``lr/head``, ``lr/backbone``);
- ``log_epoch(epoch, metrics)``: every finished epoch (from 0): ``loss`` (mean over the
  epoch's images), ``images_per_s``, ``seconds`` and ``lr/<group>``;
- ``close(record)``: the finished ``RunRecord`` (its ``metrics`` are the final scores), or
  ``None`` when the run stopped before finishing.

On a GPU the step losses are read back in groups, when the trainer checks them for NaN
anyway, so logging adds no synchronisation of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config import ResolvedRun
from harness.errors import UserError, one_line
from harness.progress import log

# Built-in loggers registered only when their package is installed: name -> pip extra.
EXTRAS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}


@dataclass(frozen=True)
class LoggedRun:
    """What ``LoggerSpec.open`` receives: the run's resolved settings, the folder it writes into
    (the run folder, or its staging folder while an ``--overwrite`` run trains), and where this
    segment of the run starts: ``start_epoch`` and ``start_step`` are 0 for a new run and the
    checkpoint's for a resumed one, whose earlier segment may have logged steps past them (the
    epoch it did not finish): those are trained again, so a logger keeping files drops them."""

    settings: ResolvedRun
    folder: Path
    start_epoch: int = 0
    start_step: int = 0

    @property
    def run_id(self) -> str:
        return self.settings.run_id


def resolve_names(registry, names) -> list[str]:
    """The ``--logger`` values checked against the registry, duplicates dropped, in order; a
    built-in whose package is missing names the extra to install."""
    chosen: list[str] = []
    for name in names:
        if name in chosen:
            continue
        if name in EXTRAS and not any(c.name == name for c in registry.components("logger")):
            raise UserError(f"--logger {name}: the {name} package is not installed; "
                            f"pip install 'multilabel-bench[{EXTRAS[name]}]'")
        registry.get("logger", name)
        chosen.append(name)
    return chosen


class RunLoggers:
    """The run's loggers, opened; every call goes to each logger that still works."""

    def __init__(self, components: list, run: LoggedRun):
        self.active: list[tuple[Any, Any]] = []
        self.closed = False
        for component in components:
            try:
                self.active.append((component, component.spec.open(run)))
            except (Exception, SystemExit) as error:
                self._drop(component, "open", error)

    def _drop(self, component, what: str, error: BaseException) -> None:
        log.warning(f"logger {component.name!r} (plugin {component.plugin.name!r}): {what} raised {one_line(error, 150)}; "
                    "it is dropped and training goes on")

    def _each(self, method: str, *args) -> None:
        for entry in list(self.active):
            component, logger = entry
            try:
                getattr(logger, method)(*args)
            except (Exception, SystemExit) as error:
                self.active.remove(entry)
                self._drop(component, method, error)

    def step(self, step: int, metrics: dict[str, float]) -> None:
        self._each("log_step", step, metrics)

    def epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        self._each("log_epoch", epoch, metrics)

    def close(self, record) -> None:
        """``close(record)`` on every logger, once (later calls do nothing)."""
        if not self.closed:
            self.closed = True
            self._each("close", record)


def open_loggers(resolved: ResolvedRun, folder: Path, registry, start_epoch: int = 0, start_step: int = 0) -> RunLoggers | None:
    """The run's chosen loggers opened on ``folder`` for a segment starting at ``start_epoch``
    (global step ``start_step``), or ``None`` when it chose none."""
    if not resolved.loggers:
        return None
    run = LoggedRun(resolved, Path(folder), start_epoch, start_step)
    return RunLoggers([registry.get("logger", name) for name in resolved.loggers], run)


def epoch_metrics(record: dict[str, Any]) -> dict[str, float]:
    """A ``log.json`` entry as the flat metrics ``log_epoch`` receives."""
    return {"loss": record["loss"], "images_per_s": record["images_per_s"], "seconds": record["seconds"],
            **{f"lr/{group}": lr for group, lr in record["lr"].items()}}
