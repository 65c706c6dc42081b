"""``bench sweep --launcher submitit``: cells as submitit jobs (local processes here, no Slurm),
resume-or-start inside each job, and the checkpoint that stops the run and requeues the job."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import TINY_PLUGIN

from harness.cli import main

submitit = pytest.importorskip("submitit")

from harness.submitit_sweep import CellJob, slurm_parameters  # noqa: E402 (needs submitit)

pytestmark = pytest.mark.slow


def test_a_submitit_sweep_trains_its_cells_as_jobs_then_skips_them(tiny_root, tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text('protocol = "smoke"\ndatasets = ["tiny"]\nmodels = ["tiny-cnn"]\naugmentations = ["flip"]\n'
                    'sizes = [32]\n[run]\nepochs = 1\ndevice = "cpu"\n')
    args = ["sweep", str(grid), "--launcher", "submitit", "--out", str(tmp_path / "runs"), "--data-root", str(tiny_root),
            "--plugin", TINY_PLUGIN]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "[1/1] done    tiny-tiny-cnn-flip-32-smoke-seed0  started, submitit job " in result.output
    record = json.loads((tmp_path / "runs" / "tiny-tiny-cnn-flip-32-smoke-seed0" / "result.json").read_text())
    assert record["protocol"]["deviations"] == {"epochs": {"protocol": 20, "used": 1}}
    again = CliRunner().invoke(main, args)
    assert "[1/1] skipped tiny-tiny-cnn-flip-32-smoke-seed0  finished" in again.output


def test_a_cell_job_resumes_or_starts_and_its_checkpoint_stops_the_run_for_a_requeue(tmp_path):
    run_dir = tmp_path / "run"
    said = tmp_path / "said"
    start = [sys.executable, "-c", f"open({str(said)!r}, 'w').write('start')"]
    resume = [sys.executable, "-c", f"open({str(said)!r}, 'w').write('resume')"]
    job = CellJob(str(run_dir), start, resume)
    assert job() == "started" and said.read_text() == "start"
    run_dir.mkdir()
    (run_dir / "run.json").write_text("{}")
    assert job() == "resumed" and said.read_text() == "resume"
    (run_dir / "result.json").write_text("{}")
    assert job() == "skipped: finished"
    failing = CellJob(str(tmp_path / "other"), [sys.executable, "-c", "raise SystemExit(3)"], resume)
    with pytest.raises(RuntimeError, match="exited with 3"):
        failing()

    job.child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    requeued = job.checkpoint()
    assert job.child.returncode == -15  # SIGTERM: a bench run stops at its last checkpoint
    assert isinstance(requeued, submitit.helpers.DelayedSubmission)
    again = requeued.function
    assert isinstance(again, CellJob) and (again.run_dir, again.start, again.resume) == (str(run_dir), start, resume)
    assert again.child is None


def test_sbatch_options_become_submitit_slurm_parameters():
    assert slurm_parameters(("--partition=gpu", "--gres=gpu:4", "--time=04:00:00")) == {
        "partition": "gpu", "gres": "gpu:4", "time": "04:00:00"}
    from harness.errors import UserError

    with pytest.raises(UserError, match="with --launcher submitit give --NAME=VALUE"):
        slurm_parameters(("--partition gpu",))
