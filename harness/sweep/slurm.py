"""``bench sweep --launcher slurm``: sbatch scripts for a grid, a job array over its unfinished
cells and a job for its ensembles, written only inside ``--out``."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

from harness.errors import UserError
from harness.files import atomic_write
from harness.naming import plain_name
from harness.rundir import is_finished
from harness.sweep.grid import SWEEP_FOLDER, Grid, fuse_args, resume_args, start_args

def _check_script_text(value: str, what: str) -> str:
    """A value written into a generated script line as it is (an #SBATCH option, the logs
    folder): one line, no control characters."""
    if re.search(r"[\x00-\x1f\x7f]", value):
        raise UserError(f"{what} {value!r} holds a newline or another control character; it would end a line of the "
                        "generated script: give it on one line")
    return value


def write_scripts(scripts: dict[str, str], out: Path) -> Path:
    """Write ``scripts`` (by file name) into ``out/_sweep/slurm``, executable and atomically,
    never through a link and never outside ``out``; returns that folder."""
    out = Path(out).resolve()
    folder = out / SWEEP_FOLDER / "slurm"
    for part in (out / SWEEP_FOLDER, folder, out / SWEEP_FOLDER / "logs"):
        if part.is_symlink():
            raise UserError(f"{part}: a symbolic link; bench sweep writes its scripts only inside --out {out}: "
                            "replace the link with a folder")
        part.mkdir(parents=True, exist_ok=True)  # Slurm does not create --output folders
    for name, text in scripts.items():
        target = folder / plain_name(name, "a generated script name")
        data = text.encode("utf-8")
        atomic_write(target, lambda stream: stream.write(data))
        os.chmod(target, 0o755)
    return folder


# Seconds before a task's time limit at which Slurm sends SIGUSR1 to the task script, which
# stops the run at its last checkpoint and requeues the task.
SLURM_SIGNAL_LEAD_S = 180

# The end of every task script: resume or start the cell chosen by the case above, and requeue
# the task when Slurm signals that it is ending (time limit) or preempting it.
_SLURM_TASK = """\
# a finished run is skipped; an unfinished one (a requeued task) continues from its checkpoint
if [ -f "$run_dir/result.json" ]; then echo "$run_dir is finished; skipped"; exit 0; fi
if [ -f "$run_dir/run.json" ]; then echo "resuming $run_dir"; command=("${resume[@]}")
else echo "starting $run_dir"; command=("${start[@]}"); fi
# SIGTERM (preemption) or SIGUSR1 (the time limit is near): the run stops at its last checkpoint
# and the task goes back into the queue, to resume there
requeue() {
  echo "$1: stopping $run_dir at its last checkpoint; requeueing job $SLURM_JOB_ID" >&2
  kill -TERM "$child" 2>/dev/null || true
  wait "$child" || true
  scontrol requeue "$SLURM_JOB_ID"
  exit 0
}
trap 'requeue SIGTERM' TERM
trap 'requeue SIGUSR1' USR1
"${command[@]}" &
child=$!
wait "$child"
"""


def launcher_command(gpus_per_cell: int | None) -> list[str]:
    """How a task calls ``bench``: directly, or under ``torchrun`` with one process per GPU."""
    if gpus_per_cell and gpus_per_cell > 1:
        return ["torchrun", "--standalone", f"--nproc-per-node={gpus_per_cell}", "-m", "harness"]
    return ["bench"]


def slurm_scripts(grid: Grid, out: Path, data_roots: dict[str | None, str], sbatch_options: tuple[str, ...] = (),
                  gpus_per_cell: int | None = None) -> dict[str, str]:
    """Scripts for a Slurm cluster, by file name: a job array over the unfinished cells, a job
    for the ensembles, and ``submit.sh``, which submits the first and makes the second wait for it.

    ``sbatch_options`` become ``#SBATCH`` lines of both jobs (``--partition=gpu``, ``--gres=gpu:1``).
    The jobs call ``bench`` from PATH; sbatch exports the submitting shell's environment. Each
    task resumes or starts its cell when it runs (a finished one is skipped), and on SIGTERM or
    SIGUSR1 stops the run at its last checkpoint and requeues itself; with ``gpus_per_cell`` it
    trains under ``torchrun`` with that many processes.
    """
    logs = out / SWEEP_FOLDER / "logs"
    _check_script_text(str(logs), "--out")
    _check_script_text(str(grid.path), "the grid file")
    header = [f"#SBATCH {_check_script_text(option, '--sbatch-option')}" for option in sbatch_options]
    cells = [c for c in grid.cells if not is_finished(out / c.run_id)]
    ensembles = [e for e in grid.ensembles if not is_finished(out / e.run_id)]
    scripts: dict[str, str] = {}
    submit = ["#!/bin/bash", f"# Submits the unfinished part of grid {grid.name} ({grid.path}).", "set -euo pipefail", 'here="$(cd "$(dirname "$0")" && pwd)"']
    if cells:
        name = f"{grid.name}-cells.sbatch"
        body = [
            "#!/bin/bash",
            f"#SBATCH --job-name=bench-{grid.name}",
            f"#SBATCH --array=0-{len(cells) - 1}",
            f"#SBATCH --output={logs}/%x-%A_%a.log",
            "#SBATCH --requeue",
            f"#SBATCH --signal=B:USR1@{SLURM_SIGNAL_LEAD_S}",
            *header,
            "set -euo pipefail",
            'case "$SLURM_ARRAY_TASK_ID" in',
        ]
        launch = launcher_command(gpus_per_cell)
        for index, cell in enumerate(cells):
            body.append(f"  {index}) run_dir={shlex.quote(str(out / cell.run_id))}; "
                        f"start=({shlex.join([*launch, *start_args(cell, grid, out, data_roots)])}); "
                        f"resume=({shlex.join([*launch, *resume_args(cell, grid, out, data_roots)])}) ;;")
        body += ['  *) echo "no cell for array task $SLURM_ARRAY_TASK_ID" >&2; exit 1 ;;', "esac"]
        scripts[name] = "\n".join(body) + "\n" + _SLURM_TASK
        submit.append(f'cells=$(sbatch --parsable "$here/{name}")')
        submit.append('echo "cells: job $cells"')
    if ensembles:
        name = f"{grid.name}-ensembles.sbatch"
        body = [
            "#!/bin/bash",
            f"#SBATCH --job-name=bench-{grid.name}-ensembles",
            f"#SBATCH --output={logs}/%x-%j.log",
            *header,
            "# each ensemble is fused on its own, so one with a failed member does not stop the rest",
            "status=0",
        ]
        body += [f"{shlex.join(['bench', *fuse_args(e, grid, out)])} || status=1" for e in ensembles]
        body.append("exit $status")
        scripts[name] = "\n".join(body) + "\n"
        dependency = ' --dependency="afterany:${cells%%;*}"' if cells else ""
        submit.append(f'sbatch --parsable{dependency} "$here/{name}"')
    scripts["submit.sh"] = "\n".join(submit) + "\n"
    return scripts
