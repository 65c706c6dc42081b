"""Stopping a run: Ctrl-C (SIGINT) to a real ``bench run`` exits 130 with the ``--resume`` command
and names no plugin; SIGTERM exits 143 the same way; the resumed run equals an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import TINY_PLUGIN

from harness.cli import main

pytestmark = pytest.mark.slow

SLOW_PLUGIN = str(Path(__file__).with_name("slow_plugin.py"))
RUN_ID = "tiny-tiny-cnn-slow-flip-32-smoke-seed0"


def slow_args(root, out, epochs=6):
    """A tiny run whose epochs take about 0.3 s (3 batches of the slow augmentation)."""
    return ["run", "--plugin", TINY_PLUGIN, "--plugin", SLOW_PLUGIN, "--dataset", "tiny", "--data-root", str(root),
            "--model", "tiny-cnn", "--aug", "slow-flip", "--protocol", "smoke", "--size", "32", "--epochs", str(epochs),
            "--device", "cpu", "--out", str(out), "--quiet"]


def wait_for(path: Path, process: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def as_in_a_terminal() -> None:
    """Ctrl-C reaches a command started from a terminal; a shell that started the suite in the
    background (`pytest &` in a script) left SIGINT ignored, and a child inherits that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(scope="module")
def reference(tiny_root, tmp_path_factory):
    """The scores of the run trained without a stop."""
    folder = tmp_path_factory.mktemp("reference")
    result = CliRunner().invoke(main, slow_args(tiny_root, folder), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return np.load(folder / RUN_ID / "scores.npz")["scores"]


@pytest.mark.parametrize("sent, code, said", [(signal.SIGINT, 130, "interrupted (Ctrl-C)"),
                                              (signal.SIGTERM, 143, "stopped by SIGTERM")])
def test_a_stopped_run_says_how_to_resume_blames_no_plugin_and_resumes_exactly(reference, tiny_root, tmp_path,
                                                                               sent, code, said):
    environment = dict(os.environ)  # the thread count of the in-process reference: CPU sums depend on it
    process = subprocess.Popen([sys.executable, "-m", "harness", *slow_args(tiny_root, tmp_path)],
                               env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=as_in_a_terminal)
    run_dir = tmp_path / RUN_ID
    wait_for(run_dir / "log.json", process)  # the first epoch is done (checkpoint, then log); later ones run now
    process.send_signal(sent)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr
    assert stderr.strip().splitlines() == [stderr.strip()]  # one line
    assert stderr.startswith(f"Error: {said} after ")
    assert stderr.strip().endswith(f"checkpoint kept; continue with `bench run --resume {run_dir}`")
    assert "plugin" not in stderr and "Traceback" not in stderr and stdout == ""
    assert not (run_dir / "result.json").exists()
    done = len(json.loads((run_dir / "log.json").read_text()))
    assert 1 <= done < 6 and f"after {done} of 6 epochs" in stderr
    resumed = CliRunner().invoke(main, ["run", "--resume", str(run_dir), "--plugin", TINY_PLUGIN, "--plugin", SLOW_PLUGIN,
                                        "--quiet"], catch_exceptions=False)
    assert resumed.exit_code == 0, resumed.output
    assert np.array_equal(np.load(run_dir / "scores.npz")["scores"], reference)


def test_a_stop_before_the_run_folder_exists_has_nothing_to_resume(tiny_root, tmp_path, monkeypatch):
    import harness.runner

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(harness.runner, "load_dataset", interrupted)
    result = CliRunner().invoke(main, slow_args(tiny_root, tmp_path))
    assert result.exit_code == 130
    assert result.stderr == "Error: interrupted (Ctrl-C) before the run folder was written; nothing to resume\n"


def test_a_signalled_process_of_a_torchrun_stops_its_peers_at_the_same_step(tiny_root, tmp_path):
    from test_distributed import free_port

    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
                "--master-port", str(free_port()), "-m", "harness"]
    process = subprocess.Popen([*launcher, *slow_args(tiny_root, tmp_path), "--model", "tiny-plain"],
                               env=dict(os.environ, OMP_NUM_THREADS="1"), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    run_dir = tmp_path / "tiny-tiny-plain-slow-flip-32-smoke-seed0"
    wait_for(run_dir / "log.json", process)
    workers = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()
    assert len(workers) == 2
    os.kill(int(workers[-1]), signal.SIGTERM)  # one worker only: its peer must not wait for it forever
    _, stderr = process.communicate(timeout=120)
    assert process.returncode != 0
    assert stderr.count("Error: stopped by SIGTERM after") == 2, stderr[-2000:]
    resumed = CliRunner().invoke(main, ["run", "--resume", str(run_dir), "--plugin", TINY_PLUGIN, "--plugin", SLOW_PLUGIN,
                                        "--quiet"], catch_exceptions=False)
    assert resumed.exit_code == 0, resumed.output
