"""Run loggers: TensorBoard event files and an MLflow file store read back with the run's own
step losses; a failing logger is one line and changes nothing; the missing-package hint."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import TINY_PLUGIN

from harness.cli import main
from harness.config import RunConfig
from harness.errors import UserError
from harness.registry import Registry

pytestmark = pytest.mark.slow

RUN_ID = "tiny-tiny-cnn-flip-32-smoke-seed0"
STEPS_PER_EPOCH = 3  # 96 training images, batch 32


def tiny_args(root, out, *extra):
    return ["run", "--plugin", TINY_PLUGIN, "--dataset", "tiny", "--data-root", str(root), "--model", "tiny-cnn",
            "--protocol", "smoke", "--size", "32", "--epochs", "2", "--device", "cpu", "--out", str(out), "--quiet",
            *extra]


@pytest.fixture(scope="module")
def plain_run(tiny_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("plain")
    result = CliRunner().invoke(main, tiny_args(tiny_root, out), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out / RUN_ID


def test_tensorboard_mlflow_and_csv_hold_the_runs_step_losses_and_results_are_unchanged(plain_run, tiny_root,
                                                                                       tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"file:{tmp_path / 'mlruns'}")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks for this to use a file store
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "loggers-test")
    result = CliRunner().invoke(main, tiny_args(tiny_root, tmp_path / "runs", "--logger", "csv", "--logger",
                                                "tensorboard", "--logger", "mlflow"), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    run_dir = tmp_path / "runs" / RUN_ID
    # loggers only watch: the scores are bit for bit those of the run without them
    assert np.array_equal(np.load(run_dir / "scores.npz")["scores"], np.load(plain_run / "scores.npz")["scores"])
    assert json.loads((run_dir / "run.json").read_text())["loggers"] == ["csv", "tensorboard", "mlflow"]
    epochs = json.loads((run_dir / "log.json").read_text())
    record = json.loads((run_dir / "result.json").read_text())

    with open(run_dir / "csv" / "steps.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [int(r["step"]) for r in rows] == list(range(2 * STEPS_PER_EPOCH))
    losses = [float(r["train/loss"]) for r in rows]
    assert {float(r["train/lr/head"]) for r in rows} == {0.05}
    # every batch holds 32 images, so each epoch's loss is the mean of its step losses
    for epoch in epochs:
        mine = losses[epoch["epoch"] * STEPS_PER_EPOCH:(epoch["epoch"] + 1) * STEPS_PER_EPOCH]
        assert epoch["loss"] == pytest.approx(np.mean(mine), rel=1e-6)

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    steps = events.Scalars("train/loss")
    assert [e.step for e in steps] == list(range(2 * STEPS_PER_EPOCH))
    assert [e.value for e in steps] == pytest.approx(losses, rel=1e-6)  # event files hold float32
    assert [e.value for e in events.Scalars("epoch/images_per_s")] == pytest.approx(
        [e["images_per_s"] for e in epochs], rel=1e-6)
    assert events.Scalars("test/map")[0].value == pytest.approx(record["metrics"]["map"], rel=1e-6)

    client = mlflow.tracking.MlflowClient()
    experiment = client.get_experiment_by_name("loggers-test")
    (found,) = client.search_runs([experiment.experiment_id])
    assert found.info.run_name == RUN_ID and found.info.status == "FINISHED"
    history = sorted(client.get_metric_history(found.info.run_id, "train/loss"), key=lambda m: m.step)
    assert [m.step for m in history] == list(range(2 * STEPS_PER_EPOCH))
    assert [m.value for m in history] == losses
    assert found.data.metrics["test/map"] == record["metrics"]["map"]
    assert found.data.params["seed"] == "0"


FAILING_LOGGER = '''
from harness import LoggerSpec, hookimpl


class Breaks:
    def log_step(self, step, metrics):
        if step == 1:
            raise RuntimeError("disk quota exceeded")

    def log_epoch(self, epoch, metrics):
        raise AssertionError("dropped after its first failure: never called")

    def close(self, record):
        raise AssertionError("never called")


@hookimpl
def register_loggers(register):
    register(LoggerSpec(name="breaks", open=lambda run: Breaks()))
    register(LoggerSpec(name="refuses", open=lambda run: 1 / 0))
'''


def test_a_failing_logger_is_one_line_and_the_run_goes_on_unchanged(plain_run, tiny_root, tmp_path):
    plugin = tmp_path / "failing_logger.py"
    plugin.write_text(FAILING_LOGGER)
    result = CliRunner().invoke(main, tiny_args(tiny_root, tmp_path / "runs", "--plugin", str(plugin),
                                                "--logger", "refuses", "--logger", "breaks", "--logger", "csv"))
    assert result.exit_code == 0, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith("logger 'refuses' (plugin ") and "open raised ZeroDivisionError" in lines[0]
    assert "logger 'breaks'" in lines[1] and "log_step raised RuntimeError: disk quota exceeded" in lines[1]
    assert all("training goes on" in line for line in lines)
    run_dir = tmp_path / "runs" / RUN_ID
    assert np.array_equal(np.load(run_dir / "scores.npz")["scores"], np.load(plain_run / "scores.npz")["scores"])
    assert (run_dir / "csv" / "final.csv").read_text().startswith("metric,value\ntest/map,")


def test_a_missing_logger_package_names_the_extra_and_an_unknown_one_is_refused(monkeypatch):
    import plugins.loggers

    monkeypatch.setattr(plugins.loggers, "installed", lambda module: False)
    registry = Registry()
    assert [c.name for c in registry.components("logger")] == ["csv"]
    with pytest.raises(UserError, match=r"--logger tensorboard: the tensorboard package is not installed; "
                                         r"pip install 'multilabel-bench\[tensorboard\]'"):
        RunConfig(loggers=("tensorboard",)).resolve(registry)
    with pytest.raises(UserError, match="unknown logger 'cvs'; did you mean csv"):
        RunConfig(loggers=("cvs",)).resolve(registry)
    assert RunConfig(loggers=("csv", "csv")).resolve(registry).loggers == ["csv"]


def test_wandb_offline_writes_a_run_without_a_warning(tiny_root, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    result = CliRunner().invoke(main, tiny_args(tiny_root, tmp_path / "runs", "--logger", "wandb", "--epochs", "1"))
    assert result.exit_code == 0, result.output
    assert "logger 'wandb'" not in result.stderr  # open, every log call and close went through
    (stored,) = (tmp_path / "runs" / RUN_ID / "wandb").glob("offline-run-*/run-*.wandb")
    assert stored.stat().st_size > 0


def test_a_resumed_run_continues_its_curves_without_the_steps_it_trains_again(tiny_root, tmp_path):
    pytest.importorskip("tensorboard")
    import os
    import signal
    import subprocess
    import sys

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from test_interrupts import RUN_ID as SLOW_RUN_ID
    from test_interrupts import SLOW_PLUGIN, slow_args, wait_for

    loggers = ["--logger", "csv", "--logger", "tensorboard"]
    straight = CliRunner().invoke(main, [*slow_args(tiny_root, tmp_path / "straight"), *loggers])
    assert straight.exit_code == 0, straight.output
    out = tmp_path / "stopped"
    process = subprocess.Popen([sys.executable, "-m", "harness", *slow_args(tiny_root, out), *loggers],
                               env=dict(os.environ), stderr=subprocess.PIPE, text=True)
    run_dir = out / SLOW_RUN_ID
    wait_for(run_dir / "log.json", process)
    while len((run_dir / "csv" / "steps.csv").read_text().splitlines()) < 6:  # the header, an epoch and more
        assert process.poll() is None
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 143
    resumed = CliRunner().invoke(main, ["run", "--resume", str(run_dir), "--plugin", TINY_PLUGIN, "--plugin", SLOW_PLUGIN,
                                        "--quiet"])
    assert resumed.exit_code == 0, resumed.output

    def steps(folder):
        with open(folder / "csv" / "steps.csv", newline="") as stream:
            return [(int(r["step"]), float(r["train/loss"])) for r in csv.DictReader(stream)]

    reference = steps(tmp_path / "straight" / SLOW_RUN_ID)
    assert [s for s, _ in reference] == list(range(6 * STEPS_PER_EPOCH))
    assert steps(run_dir) == reference  # each step once, with the uninterrupted run's loss
    with open(run_dir / "csv" / "epochs.csv", newline="") as stream:
        assert [int(r["epoch"]) for r in csv.DictReader(stream)] == list(range(6))
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    assert [(e.step, pytest.approx(e.value, rel=1e-6)) for e in events.Scalars("train/loss")] == reference


def test_a_grid_chooses_loggers_for_every_cell(tmp_path):
    from harness.sweep import load_grid

    grid = tmp_path / "grid.toml"
    grid.write_text('protocol = "smoke"\ndatasets = ["shapes"]\nmodels = ["smallcnn"]\naugmentations = ["flip"]\n'
                    'sizes = [32]\n[run]\nloggers = ["csv", "tensorboard"]\n')
    assert load_grid(grid).run_options == {"loggers": ["csv", "tensorboard"]}
    result = CliRunner().invoke(main, ["sweep", str(grid), "--dry-run", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert " --logger csv --logger tensorboard " in result.output
    grid.write_text(grid.read_text().replace('["csv", "tensorboard"]', '"csv"'))
    refused = CliRunner().invoke(main, ["sweep", str(grid), "--dry-run"])
    assert refused.exit_code == 1 and "'loggers' 'csv': give a list of names" in refused.output, refused.output
