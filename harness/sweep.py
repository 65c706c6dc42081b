"""Grids of runs: a TOML file expanded to cells (one ``bench run`` each) and ensembles.

A grid file::

    name = "wang2019-table2"        # optional; default: the file name without .toml
    protocol = "wang2019"
    datasets = ["voc2007"]
    models = ["resnet101"]
    seeds = [0]                     # optional, default [0]; `bench sweep --seeds` overrides
    augmentations = ["flip"]        # with sizes: every combination is a cell
    sizes = [384, 448, 512]

    losses = ["bce"]                # optional: one cell per loss (default: the protocol's)
    recipes = ["sgd-step"]          # optional: one cell per recipe (default: the protocol's)

    [run]                           # optional: any `bench run` option for every cell
    epochs = 10

    [[ensembles]]                   # fused with `bench fuse` once its members are finished
    name = "ScaleEn"                # the leaderboard's method name
    method = "mean"                 # fusion component, default "mean"
    augmentations = ["mixup"]       # members: every augmentation × size, for each
    sizes = [384, 448, 512]         #   dataset × model × seed of the grid
    datasets = ["voc2007"]          # optional subsets of the grid's datasets and models
    models = ["resnet101"]
    exclude = [{dataset = "voc2007", model = "vgg16"}]   # optional

Every ensemble member is a cell too, so a grid of ensembles alone trains what it needs.
Cells and ensembles keep deterministic run ids, so a sweep resumes: finished run folders are
skipped, unfinished ones are continued with ``bench run --resume``.

A grid file is a stranger's file: ``name`` and ensemble names must be plain names, and no
value holds a newline or other control character, ``$``, a backtick or a ``..`` folder (one
line naming the key); values in generated scripts are ``shlex``-quoted, and the scripts are
written only into ``--out``'s ``_sweep/slurm``, never through a link.

A cell is a ``RunConfig``: the ``[run]`` keys are ``bench run``'s own option names, checked
against that command's definitions. A local sweep trains its cells one after the other in
this process; with ``--per-gpu`` (and on Slurm) each cell is a ``bench run`` process given
the same options.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
import queue
import shlex
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
from harness.config import RunConfig
from harness.errors import UserError, cut, one_line
from harness.fusion import fuse
from harness.naming import default_run_id, fusion_run_id, plain_name
from harness.progress import log_to
from harness.protocol import get_protocol
from harness.files import atomic_write
from harness.recipes import DEFAULT_RECIPE
from harness.rundir import RUN_FILE, is_finished

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

SWEEP_FOLDER = "_sweep"
_GRID_KEYS = {"name", "protocol", "datasets", "models", "seeds", "augmentations", "sizes", "losses", "run", "ensembles",
              "recipes"}
_ENSEMBLE_KEYS = {"name", "method", "augmentations", "sizes", "datasets", "models", "exclude"}
# What a cell fixes itself; the [run] table may set any other option of `bench run`.
_CELL_FIELDS = {"dataset", "model", "augmentation", "size", "seed", "protocol", "out", "run_id", "plugins", "data_root",
                "loss", "recipe"}


@dataclass(frozen=True)
class Cell:
    """One training run of the grid (``loss``, ``recipe`` None: the protocol's)."""

    dataset: str
    model: str
    augmentation: str
    size: int
    seed: int
    protocol: str
    loss: str | None = None
    recipe: str | None = None

    @property
    def run_id(self) -> str:
        default = get_protocol(self.protocol).loss
        loss = self.loss if self.loss and self.loss != default else None
        recipe = self.recipe if self.recipe and self.recipe != DEFAULT_RECIPE else None
        return default_run_id(self.dataset, self.model, self.augmentation, self.size, self.protocol, self.seed, loss,
                              recipe)


@dataclass(frozen=True)
class Ensemble:
    """One fused run: its label, fusion method and member cells."""

    name: str
    method: str
    members: tuple[Cell, ...]

    @property
    def run_id(self) -> str:
        first = self.members[0]
        return fusion_run_id(
            first.dataset,
            [m.model for m in self.members],
            [m.augmentation for m in self.members],
            [m.size for m in self.members],
            first.protocol,
            [m.seed for m in self.members],
            self.name,
        )


@dataclass
class Grid:
    """An expanded grid file."""

    name: str
    path: Path
    cells: list[Cell]
    ensembles: list[Ensemble]
    run_options: dict[str, Any] = field(default_factory=dict)
    plugins: tuple[str, ...] = ()  # --plugin values passed to every bench run and bench fuse


def _list(table: dict, key: str, kind: type, where: str, default: list | None = None) -> list:
    value = table.get(key, default)
    if value is None:
        raise UserError(f"{where}: missing key {key!r}; give a list, e.g. {key} = [...]")
    if not isinstance(value, list) or not value or not all(isinstance(v, kind) and not isinstance(v, bool) for v in value):
        raise UserError(f"{where}: {key} must be a non-empty list of {kind.__name__}s, got {value!r}")
    return value


def _check_keys(table: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")


def load_grid(path: Path, seeds: list[int] | None = None) -> Grid:
    """Read and expand a grid file; ``seeds`` replaces the file's seeds."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such grid file") from None
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"{path}: invalid TOML ({error})") from None
    where = str(path)
    _check_keys(data, _GRID_KEYS, where)
    check_grid_values(data, where)
    plain_name(data.get("name", path.stem), f"{where}: name")
    protocol = data.get("protocol")
    if not isinstance(protocol, str):
        raise UserError(f"{where}: missing key 'protocol'; e.g. protocol = \"wang2019\"")
    datasets = _list(data, "datasets", str, where)
    models = _list(data, "models", str, where)
    seeds = seeds or _list(data, "seeds", int, where, default=[0])
    get_protocol(protocol)
    run_options = data.get("run", {})
    if not isinstance(run_options, dict):
        raise UserError(f"{where}: [run] must be a table of `bench run` options")
    _check_run_options(run_options, f"{where} [run]")
    losses = _list(data, "losses", str, where, default=[None]) if "losses" in data else [None]
    recipes = _list(data, "recipes", str, where) if "recipes" in data else [None]

    cells: dict[Cell, None] = {}
    if "augmentations" in data or "sizes" in data:
        augmentations = _list(data, "augmentations", str, where)
        sizes = _list(data, "sizes", int, where)
        for dataset, model, augmentation, size, seed, loss, recipe in itertools.product(
            datasets, models, augmentations, sizes, seeds, losses, recipes
        ):
            cells[Cell(dataset, model, augmentation, size, seed, protocol, loss, recipe)] = None

    ensembles = []
    _check_tables(data.get("ensembles", []), f"{where}: ensembles", "[[ensembles]] tables")
    for index, entry in enumerate(data.get("ensembles", [])):
        at = f"{where} ensembles[{index}]"
        _check_keys(entry, _ENSEMBLE_KEYS, at)
        _check_tables(entry.get("exclude", []), f"{at}: exclude", 'tables like {dataset = "voc2007", model = "vgg16"}')
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise UserError(f"{at}: missing key 'name' (the leaderboard's method name, e.g. \"ScaleEn\")")
        plain_name(name, f"{at}: name")
        augmentations = _list(entry, "augmentations", str, at)
        sizes = _list(entry, "sizes", int, at)
        if len(augmentations) * len(sizes) < 2:
            raise UserError(f"{at}: an ensemble needs at least two members (augmentations × sizes)")
        excluded = {(e.get("dataset"), e.get("model")) for e in entry.get("exclude", [])}
        for dataset, model, seed in itertools.product(
            _list(entry, "datasets", str, at, default=datasets), _list(entry, "models", str, at, default=models), seeds
        ):
            if (dataset, model) in excluded:
                continue
            for loss, recipe in itertools.product(losses, recipes):
                members = tuple(
                    Cell(dataset, model, augmentation, size, seed, protocol, loss, recipe)
                    for augmentation, size in itertools.product(augmentations, sizes)
                )
                cells.update(dict.fromkeys(members))
                ensembles.append(Ensemble(name, entry.get("method", "mean"), members))
    if not cells:
        raise UserError(f"{where}: the grid has no cells; give augmentations and sizes, or [[ensembles]]")
    return Grid(data.get("name", path.stem), path, list(cells), ensembles, run_options)


# What no grid value may hold: it would end a line of a generated script, expand in a shell,
# or climb out of a folder. Values are shlex-quoted in scripts as well; this says which key is wrong.
_UNSAFE_VALUE = re.compile(r"[\x00-\x1f\x7f$`]|(^|/)\.\.(/|$)")


def _check_tables(value: Any, where: str, what: str) -> None:
    """``value`` must be a list of TOML tables (``[[ensembles]]``, ``exclude``)."""
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise UserError(f"{where} is {value!r}; give a list of {what}")


def check_grid_values(value: Any, where: str, key: str = "") -> None:
    """Every string in a grid file, at any depth, is free of control characters (newlines),
    ``$``, backticks and ``..`` path components: else one line naming the key."""
    if isinstance(value, str):
        if _UNSAFE_VALUE.search(value):
            raise UserError(f"{where}: {key} is {value!r}; grid values hold no newline or other control character, "
                            "no $ or backtick and no '..' folder: use plain names and paths below the grid")
    elif isinstance(value, dict):
        for name, item in value.items():
            check_grid_values(item, where, f"{key}.{name}" if key else name)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_grid_values(item, where, f"{key}[{index}]")


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


def _check_run_options(options: dict[str, Any], where: str) -> None:
    """The [run] keys must be `bench run` options a grid may set for every cell."""
    allowed = {f.name for f in dataclasses.fields(RunConfig)} - _CELL_FIELDS
    _check_keys({key.replace("-", "_") for key in options}, allowed, where)
    RunConfig.from_options(options, where)


def parse_data_roots(values: tuple[str, ...], datasets: set[str]) -> dict[str | None, str]:
    """``--data-root PATH`` (every dataset) or ``--data-root NAME=PATH`` (one dataset)."""
    roots: dict[str | None, str] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if sep and name in datasets:
            roots[name] = str(Path(path).expanduser().resolve())
        elif sep and not Path(value).expanduser().exists():
            raise UserError(
                f"--data-root {value}: the grid has no dataset {name!r} (it has {', '.join(sorted(datasets))})"
            )
        else:
            roots[None] = str(Path(value).expanduser().resolve())
    return roots


def cell_config(cell: Cell, grid: Grid, out: Path, data_roots: dict[str | None, str]) -> RunConfig:
    """The ``RunConfig`` that trains ``cell``."""
    return dataclasses.replace(
        RunConfig.from_options(grid.run_options, str(grid.path)),
        dataset=cell.dataset, model=cell.model, augmentation=cell.augmentation, size=cell.size, seed=cell.seed,
        protocol=cell.protocol, loss=cell.loss, recipe=cell.recipe, out=str(out), run_id=cell.run_id, plugins=grid.plugins,
        data_root=data_roots.get(cell.dataset, data_roots.get(None)),
    )


def run_args(cell: Cell, grid: Grid, out: Path, data_roots: dict[str | None, str]) -> list[str]:
    """The ``bench`` arguments that train ``cell``, or continue it when it was interrupted."""
    if (out / cell.run_id / RUN_FILE).is_file():
        return resume_args(cell, grid, out, data_roots)
    return start_args(cell, grid, out, data_roots)


def start_args(cell: Cell, grid: Grid, out: Path, data_roots: dict[str | None, str]) -> list[str]:
    """The ``bench`` arguments that start ``cell``."""
    identity = ("dataset", "model", "augmentation", "size", "protocol", "seed")
    return ["run", *cell_config(cell, grid, out, data_roots).to_args(always=identity), "--quiet"]


def resume_args(cell: Cell, grid: Grid, out: Path, data_roots: dict[str | None, str]) -> list[str]:
    """The ``bench`` arguments that continue ``cell`` from its run folder, naming the grid's
    plugins again (``--resume`` imports no code its run folder names)."""
    root = data_roots.get(cell.dataset, data_roots.get(None))
    return ["run", "--resume", str(out / cell.run_id), *(["--data-root", root] if root else []),
            *(arg for plugin in grid.plugins for arg in ("--plugin", plugin)), "--quiet"]


def fuse_args(ensemble: Ensemble, grid: Grid, out: Path) -> list[str]:
    """The ``bench`` arguments that build ``ensemble`` from its finished members."""
    return [
        "fuse",
        *(str(out / m.run_id) for m in ensemble.members),
        "--out", str(out),
        "--method", ensemble.method,
        "--name", ensemble.name,
        "--run-id", ensemble.run_id,
        *(arg for plugin in grid.plugins for arg in ("--plugin", plugin)),
    ]


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


def dry_run_lines(grid: Grid, out: Path, data_roots: dict[str | None, str]) -> list[str]:
    """The commands a local sweep would run, one line each; finished run folders are noted as skipped."""
    lines = []
    for cell in grid.cells:
        finished = is_finished(out / cell.run_id)
        lines.append(f"skip {cell.run_id} (finished)" if finished else shlex.join(["bench", *run_args(cell, grid, out, data_roots)]))
    for ensemble in grid.ensembles:
        finished = is_finished(out / ensemble.run_id)
        lines.append(f"skip {ensemble.run_id} (finished)" if finished else shlex.join(["bench", *fuse_args(ensemble, grid, out)]))
    return lines


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
