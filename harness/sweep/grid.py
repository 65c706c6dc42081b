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
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config import RunConfig
from harness.errors import UserError
from harness.naming import default_run_id, fusion_run_id, plain_name
from harness.protocol import get_protocol
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
