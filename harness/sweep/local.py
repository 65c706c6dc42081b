"""``bench sweep`` on this machine: the cells one after the other in this process, or with
``--per-gpu`` one ``bench run`` process per visible GPU; then the ensembles."""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness import runner
from harness.errors import UserError, cut, one_line
from harness.fusion import fuse
from harness.progress import log_to
from harness.rundir import RUN_FILE, is_finished
from harness.sweep.grid import SWEEP_FOLDER, Cell, Grid, cell_config, run_args

def bench_command() -> list[str]:
    """How to call ``bench`` from here: the script next to this Python, else the one on PATH."""
    beside = Path(sys.executable).with_name("bench")
    found = str(beside) if beside.is_file() else shutil.which("bench")
    if not found:
        raise UserError("cannot find the `bench` command; install this package (pip install -e .) in this environment")
    return [found]


def visible_gpus() -> list[str]:
    """GPU indices from ``CUDA_VISIBLE_DEVICES``, else from ``nvidia-smi -L``; empty without GPUs."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip() and g.strip() != "-1"]
    if not shutil.which("nvidia-smi"):
        return []
    listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return [str(i) for i, line in enumerate(listing.stdout.splitlines()) if line.startswith("GPU ")]


@dataclass
class Summary:
    """Counts per status for cells and ensembles."""

    counts: dict[str, dict[str, int]] = field(
        default_factory=lambda: {kind: {"done": 0, "skipped": 0, "failed": 0} for kind in ("cells", "ensembles")}
    )

    @property
    def failed(self) -> int:
        return sum(c["failed"] for c in self.counts.values())

    def line(self) -> str:
        return "; ".join(
            f"{sum(c.values())} {kind}: {c['done']} done, {c['skipped']} skipped, {c['failed']} failed"
            for kind, c in self.counts.items()
        )


def _last_line(log: Path) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no output"


class LocalSweep:
    """Runs a grid's cells, then its ensembles, on this machine.

    Without ``per_gpu`` the cells train one after the other in this process; with it,
    ``per_gpu`` ``bench run`` processes share each visible GPU, each pinned through
    ``CUDA_VISIBLE_DEVICES``. Every cell's lines go to ``OUT/_sweep/logs/<run-id>.log``;
    ``echo`` receives one line per cell and ensemble.
    """

    def __init__(self, grid: Grid, out: Path, data_roots: dict[str | None, str], *, per_gpu: int | None,
                 echo: Callable[[str], None]):
        self.grid, self.out, self.data_roots, self.echo = grid, Path(out), data_roots, echo
        self.logs = self.out / SWEEP_FOLDER / "logs"
        self.summary = Summary()
        self.total = len(grid.cells) + len(grid.ensembles)
        self.position = 0
        self.records: list = []  # the RunRecords made in this process
        self.lock = threading.Lock()
        gpus = visible_gpus() if per_gpu else []
        if per_gpu and not gpus:
            echo("no GPU visible: running one cell at a time")
        self.slots: list[str | None] = [g for g in gpus for _ in range(per_gpu or 0)]

    def _unfinished_cells(self) -> list[Cell]:
        """The cells still to train; each finished one is reported as skipped."""
        pending = []
        for cell in self.grid.cells:
            if is_finished(self.out / cell.run_id):
                self._report("cells", "skipped", cell.run_id, "finished")
            else:
                pending.append(cell)
        return pending

    def _report(self, kind: str, status: str, run_id: str, detail: str = "") -> None:
        with self.lock:
            self.position += 1
            self.summary.counts[kind][status] += 1
            width = len(str(self.total))
            self.echo(f"[{self.position:>{width}}/{self.total}] {status:<7} {run_id}{'  ' + detail if detail else ''}")

    def _in_process(self, kind: str, run_id: str, work: Callable[[], Any]) -> None:
        log = self.logs / f"{run_id}.log"
        started = time.monotonic()
        try:
            with log_to(log):
                record = work()
        except UserError as error:
            self._report(kind, "failed", run_id, f"{cut(error, 200)} (log: {log})")
            return
        except Exception as error:  # a bug in one cell must not stop the others
            with open(log, "a") as stream:
                traceback.print_exc(file=stream)
            self._report(kind, "failed", run_id, f"unexpected {one_line(error)} (traceback in {log})")
            return
        self.records.append(record)
        self._report(kind, "done", run_id, f"{time.monotonic() - started:.0f} s")

    def _train(self, cell: Cell) -> None:
        run_dir = self.out / cell.run_id
        if (run_dir / RUN_FILE).is_file():
            root = self.data_roots.get(cell.dataset, self.data_roots.get(None))
            self._in_process("cells", cell.run_id,
                             lambda: runner.run(resume=run_dir, data_root=root, plugins=self.grid.plugins))
        else:
            config = cell_config(cell, self.grid, self.out, self.data_roots)
            self._in_process("cells", cell.run_id, lambda: runner.run(config))

    def _subprocess(self, run_id: str, args: list[str], slots: "queue.Queue[str]") -> None:
        slot = slots.get()
        try:
            env = dict(os.environ, CUDA_VISIBLE_DEVICES=slot)
            self.logs.mkdir(parents=True, exist_ok=True)
            log = self.logs / f"{run_id}.log"
            started = time.monotonic()
            with open(log, "w") as stream:
                code = subprocess.run([*bench_command(), *args], stdout=stream, stderr=subprocess.STDOUT, env=env).returncode
            seconds = time.monotonic() - started
            if code == 0 and is_finished(self.out / run_id):
                self._report("cells", "done", run_id, f"{seconds:.0f} s on GPU {slot}")
            else:
                self._report("cells", "failed", run_id, f"exit {code}: {_last_line(log)} (log: {log})")
        finally:
            slots.put(slot)

    def run(self) -> Summary:
        pending = self._unfinished_cells()
        if self.slots:
            slots: "queue.Queue[str]" = queue.Queue()
            for slot in self.slots:
                slots.put(slot)
            with ThreadPoolExecutor(max_workers=len(self.slots)) as pool:
                jobs = [pool.submit(self._subprocess, c.run_id, run_args(c, self.grid, self.out, self.data_roots), slots)
                        for c in pending]
                for job in jobs:
                    job.result()
        else:
            for cell in pending:
                self._train(cell)
        return self.build_ensembles()

    def build_ensembles(self) -> Summary:
        """Fuse every ensemble whose members are finished (cells trained here or elsewhere)."""
        for ensemble in self.grid.ensembles:
            missing = [m.run_id for m in ensemble.members if not is_finished(self.out / m.run_id)]
            if is_finished(self.out / ensemble.run_id):
                self._report("ensembles", "skipped", ensemble.run_id, "finished")
            elif missing:
                self._report("ensembles", "failed", ensemble.run_id, f"member {missing[0]} is not finished")
            else:
                self._in_process("ensembles", ensemble.run_id, lambda e=ensemble: fuse(
                    [self.out / m.run_id for m in e.members], name=e.name, method=e.method, out=self.out,
                    run_id=e.run_id, plugins=self.grid.plugins))
        return self.summary
