"""A generated Slurm task, run with bash (a fake ``scontrol`` on PATH), killed with SIGTERM
mid-run, requeues itself; run again it resumes the run to the uninterrupted scores, and a
third time it skips the finished run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import TINY_PLUGIN
from test_interrupts import RUN_ID, SLOW_PLUGIN, reference, wait_for  # noqa: F401 (reference is a fixture)

from harness.cli import main

pytestmark = pytest.mark.slow

FAKE_SCONTROL = """#!/bin/sh
echo "$@" >> "$SCONTROL_CALLS"
"""


def test_a_killed_slurm_task_requeues_and_its_rerun_resumes(reference, tiny_root, tmp_path):  # noqa: F811
    grid = tmp_path / "grid.toml"
    grid.write_text('protocol = "smoke"\ndatasets = ["tiny"]\nmodels = ["tiny-cnn"]\naugmentations = ["slow-flip"]\n'
                    'sizes = [32]\n[run]\nepochs = 6\ndevice = "cpu"\n')
    out = tmp_path / "runs"
    written = CliRunner().invoke(main, ["sweep", str(grid), "--launcher", "slurm", "--out", str(out), "--data-root",
                                        str(tiny_root), "--plugin", TINY_PLUGIN, "--plugin", SLOW_PLUGIN])
    assert written.exit_code == 0, written.output
    script = out / "_sweep" / "slurm" / "grid-cells.sbatch"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(FAKE_SCONTROL)
    (bin_dir / "scontrol").chmod(0o755)
    calls = tmp_path / "scontrol-calls"
    environment = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                       SLURM_ARRAY_TASK_ID="0", SLURM_JOB_ID="4242", SCONTROL_CALLS=str(calls))

    def task() -> subprocess.Popen:
        return subprocess.Popen(["bash", str(script)], env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    run_dir = out / RUN_ID
    first = task()
    wait_for(run_dir / "log.json", first)  # one epoch done, the next ones under way
    first.send_signal(signal.SIGTERM)  # to the task script only, as Slurm signals the batch shell
    stdout, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr
    assert stdout.startswith(f"starting {run_dir}")
    assert f"SIGTERM: stopping {run_dir} at its last checkpoint; requeueing job 4242" in stderr
    assert "stopped by SIGTERM after" in stderr and f"`bench run --resume {run_dir}`" in stderr
    assert calls.read_text() == "requeue 4242\n"
    assert (run_dir / "checkpoint.pt").is_file() and not (run_dir / "result.json").exists()
    done = len(json.loads((run_dir / "log.json").read_text()))
    assert 1 <= done < 6

    again = task()  # the requeued task
    stdout, stderr = again.communicate(timeout=300)
    assert again.returncode == 0, stderr
    assert stdout.startswith(f"resuming {run_dir}")
    assert np.array_equal(np.load(run_dir / "scores.npz")["scores"], reference)
    assert [e["epoch"] for e in json.loads((run_dir / "log.json").read_text())] == list(range(6))

    finished = task()
    stdout, _ = finished.communicate(timeout=60)
    assert finished.returncode == 0 and stdout == f"{run_dir} is finished; skipped\n"
    assert calls.read_text() == "requeue 4242\n"
