"""``bench sweep --launcher submitit``: every unfinished cell a submitit job (on Slurm, or local
processes where there is no Slurm), waited for here; then the ensembles are fused here.

Each job resumes or starts its cell when it runs (a finished run is skipped) by calling
``bench run`` (under ``torchrun`` with ``--gpus-per-cell``). When submitit signals a timeout or
preemption, the job stops its run at the last checkpoint and submitit requeues it; the
requeued job resumes the run.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import submitit

from harness.errors import UserError, one_line
from harness.rundir import RUN_FILE, is_finished
from harness.sweep.grid import SWEEP_FOLDER, Grid, resume_args, start_args
from harness.sweep.local import LocalSweep, Summary, bench_command
from harness.sweep.slurm import launcher_command

# A job's time limit unless an --sbatch-option=--time=… gives Slurm another.
TIMEOUT_MIN = 24 * 60


class CellJob(submitit.helpers.Checkpointable):
    """One cell: ``bench run`` that resumes ``run_dir`` when it holds a run, else starts it."""

    def __init__(self, run_dir: str, start: list[str], resume: list[str]):
        self.run_dir, self.start, self.resume = run_dir, start, resume
        self.child: subprocess.Popen | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "child": None}  # a process does not travel with a requeued job

    def __call__(self) -> str:
        run_dir = Path(self.run_dir)
        if is_finished(run_dir):
            return "skipped: finished"
        command = self.resume if (run_dir / RUN_FILE).is_file() else self.start
        self.child = subprocess.Popen(command)
        code = self.child.wait()
        if code != 0:
            raise RuntimeError(f"{' '.join(command[:2])} exited with {code}")
        return "resumed" if command is self.resume else "started"

    def checkpoint(self, *args, **kwargs) -> submitit.helpers.DelayedSubmission:
        """Stop the run at its last checkpoint (SIGTERM), then requeue this job to resume it."""
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)
            self.child.wait()
        return submitit.helpers.DelayedSubmission(CellJob(self.run_dir, self.start, self.resume))


def slurm_parameters(sbatch_options: tuple[str, ...]) -> dict[str, str]:
    """``--sbatch-option=--partition=gpu`` values as submitit's ``slurm_additional_parameters``."""
    parameters = {}
    for option in sbatch_options:
        key, sep, value = option.removeprefix("--").partition("=")
        if not option.startswith("--") or not sep or not key:
            raise UserError(f"--sbatch-option {option!r}: with --launcher submitit give --NAME=VALUE, e.g. --partition=gpu")
        parameters[key.replace("-", "_")] = value
    return parameters


class SubmititSweep(LocalSweep):
    """Submits the unfinished cells as one batch of submitit jobs, waits for each, then fuses the ensembles here."""

    def __init__(self, grid: Grid, out: Path, data_roots: dict[str | None, str], *, gpus_per_cell: int | None,
                 sbatch_options: tuple[str, ...], echo):
        super().__init__(grid, out, data_roots, per_gpu=None, echo=echo)
        self.executor = submitit.AutoExecutor(folder=self.out / SWEEP_FOLDER / "submitit")
        self.executor.update_parameters(name=f"bench-{grid.name}", timeout_min=TIMEOUT_MIN, tasks_per_node=1,
                                        gpus_per_node=gpus_per_cell or 0,
                                        slurm_additional_parameters=slurm_parameters(sbatch_options))
        launch = launcher_command(gpus_per_cell)
        self.launch = bench_command() if launch == ["bench"] else launch

    def run(self) -> Summary:
        pending = self._unfinished_cells()
        jobs = []
        if pending:
            with self.executor.batch():
                jobs = [(cell, self.executor.submit(CellJob(
                    str(self.out / cell.run_id), [*self.launch, *start_args(cell, self.grid, self.out, self.data_roots)],
                    [*self.launch, *resume_args(cell, self.grid, self.out, self.data_roots)]))) for cell in pending]
        for cell, job in jobs:
            try:
                how = job.result()
            except Exception as error:  # the job failed: its own log says why
                self._report("cells", "failed", cell.run_id, f"{one_line(error, 150)} (log: {job.paths.stderr})")
                continue
            status = "done" if is_finished(self.out / cell.run_id) else "failed"
            self._report("cells", status, cell.run_id, f"{how}, submitit job {job.job_id}")
        return self.build_ensembles()
