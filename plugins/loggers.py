"""Built-in run loggers: ``csv`` always; ``tensorboard``, ``wandb`` and ``mlflow`` when their
package is installed (extras ``[tensorboard]``, ``[wandb]``, ``[mlflow]``).

Each writes what ``harness.loggers`` describes: per-step ``train/loss`` and ``train/lr/<group>``,
per-epoch ``epoch/loss``, ``epoch/images_per_s``, ``epoch/seconds``, ``epoch/lr/<group>``, and
the final scalar metrics as ``test/<metric>`` (fractions, as in ``result.json``). Files go
into the run folder (``csv/``, ``tensorboard/``, ``wandb/``), so ``tensorboard --logdir runs``
shows every run; MLflow writes where ``MLFLOW_TRACKING_URI`` points (its default: ``./mlruns``).
"""

from __future__ import annotations

import csv
import importlib.util
import math
import os

from harness import LoggerSpec, hookimpl
from harness.files import atomic_write

PROJECT = "multilabel-bench"  # the W&B project and MLflow experiment unless the environment names one


def final_metrics(record) -> dict[str, float]:
    """The record's scalar metrics as ``test/<name>`` (per-class lists and counts of lists left out)."""
    if record is None:
        return {}
    return {f"test/{name}": float(value) for name, value in record.metrics.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)}


def _prefixed(prefix: str, metrics: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}/{name}": float(value) for name, value in metrics.items()}


class CsvLogger:
    """``csv/steps.csv`` (step, train/…), ``csv/epochs.csv`` (epoch, epoch/…) and ``csv/final.csv``
    (metric, value) in the run folder. A resumed run keeps the rows before its start and appends."""

    def __init__(self, run):
        self.folder = run.folder / "csv"
        self.folder.mkdir(parents=True, exist_ok=True)
        self._keep_before("steps.csv", run.start_step)
        self._keep_before("epochs.csv", run.start_epoch)

    def _keep_before(self, name: str, start: int) -> None:
        """Drop the rows an interrupted segment logged at or after ``start`` (they are trained again)."""
        path = self.folder / name
        if not path.is_file():
            return
        with open(path, newline="") as stream:
            rows = list(csv.reader(stream))
        kept = rows[:1] + [row for row in rows[1:] if row and int(row[0]) < start]
        if len(kept) != len(rows):
            text = "".join(",".join(row) + "\r\n" for row in kept)
            atomic_write(path, lambda out: out.write(text.encode()))

    def _append(self, name: str, index_name: str, index: int, metrics: dict[str, float]) -> None:
        path = self.folder / name
        new = not path.is_file() or path.stat().st_size == 0
        with open(path, "a", newline="") as stream:
            writer = csv.writer(stream)
            if new:
                writer.writerow([index_name, *metrics])
            writer.writerow([index, *metrics.values()])

    def log_step(self, step: int, metrics: dict[str, float]) -> None:
        self._append("steps.csv", "step", step, _prefixed("train", metrics))

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        self._append("epochs.csv", "epoch", epoch, _prefixed("epoch", metrics))

    def close(self, record) -> None:
        if record is None:
            return
        rows = "metric,value\n" + "".join(f"{name},{value!r}\n" for name, value in final_metrics(record).items())
        atomic_write(self.folder / "final.csv", lambda stream: stream.write(rows.encode()))


class TensorBoardLogger:
    """Event files in ``tensorboard/`` of the run folder, through torch's ``SummaryWriter``; a
    resumed run purges the steps its interrupted segment logged past its start."""

    def __init__(self, run):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run.folder / "tensorboard"), purge_step=run.start_step or None)
        self.epochs = run.settings.epochs

    def log_step(self, step: int, metrics: dict[str, float]) -> None:
        for name, value in _prefixed("train", metrics).items():
            self.writer.add_scalar(name, value, step)

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        for name, value in _prefixed("epoch", metrics).items():
            self.writer.add_scalar(name, value, epoch)

    def close(self, record) -> None:
        for name, value in final_metrics(record).items():
            self.writer.add_scalar(name, value, self.epochs)
        self.writer.close()


class WandbLogger:
    """A W&B run named after the run id, with the resolved settings as its config; offline when
    ``WANDB_MODE=offline``. Step curves use W&B's step; epoch curves carry an ``epoch`` key."""

    def __init__(self, run):
        import wandb

        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", PROJECT), name=run.run_id,
                              dir=str(run.folder), config=run.settings.to_dict(), reinit="create_new")

    def log_step(self, step: int, metrics: dict[str, float]) -> None:
        self.run.log(_prefixed("train", metrics), step=step)

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        self.run.log({**_prefixed("epoch", metrics), "epoch": epoch})

    def close(self, record) -> None:
        self.run.summary.update(final_metrics(record))
        self.run.finish(exit_code=0 if record is not None else 1)


class MlflowLogger:
    """An MLflow run named after the run id in experiment ``$MLFLOW_EXPERIMENT_NAME`` (default
    multilabel-bench), with the resolved settings as parameters; ``FINISHED`` or ``KILLED``."""

    def __init__(self, run):
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient()
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", PROJECT)
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)
        self.run_id = self.client.create_run(experiment_id, run_name=run.run_id).info.run_id
        settings = {key: str(value)[:250] for key, value in run.settings.to_dict().items()}
        from mlflow.entities import Param

        self.client.log_batch(self.run_id, params=[Param(key, value) for key, value in settings.items()])
        self.epochs = run.settings.epochs

    def _log(self, metrics: dict[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(name, value, now, step) for name, value in metrics.items()])

    def log_step(self, step: int, metrics: dict[str, float]) -> None:
        self._log(_prefixed("train", metrics), step)

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        self._log(_prefixed("epoch", metrics), epoch)

    def close(self, record) -> None:
        self._log(final_metrics(record), self.epochs)
        self.client.set_terminated(self.run_id, status="FINISHED" if record is not None else "KILLED")


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, found without importing it (``bench plugins`` stays fast)."""
    return importlib.util.find_spec(module) is not None


@hookimpl
def register_loggers(register):
    register(LoggerSpec(name="csv", version="1", open=CsvLogger,
                        description="csv/steps.csv, csv/epochs.csv, csv/final.csv in the run folder"))
    if installed("tensorboard"):
        register(LoggerSpec(name="tensorboard", version="1", open=TensorBoardLogger,
                            description="TensorBoard event files in tensorboard/ of the run folder"))
    if installed("wandb"):
        register(LoggerSpec(name="wandb", version="1", open=WandbLogger,
                            description="a Weights & Biases run ($WANDB_PROJECT, WANDB_MODE=offline works)"))
    if installed("mlflow"):
        register(LoggerSpec(name="mlflow", version="1", open=MlflowLogger,
                            description="an MLflow run at $MLFLOW_TRACKING_URI (default ./mlruns)"))
