"""A run's settings: what the user asked for (``RunConfig``) and what it resolves to (``ResolvedRun``).

``RunConfig`` holds the options of ``bench run`` (``None``: the protocol's default).
``RunConfig.resolve(registry)`` fills every default from the protocol, checks every value
and resolves paths to absolute ones, once; ``ResolvedRun.deviations`` then gives every way
the run departs from the protocol (with the initialisation its weights show, known once
the model is built). The
``ResolvedRun`` is what the trainer takes, what ``run.json`` stores and what ``--resume``
and ``bench leaderboard reproduce`` read back, without resolving anything again.
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UserError, one_line
from harness.naming import code_sha256, default_run_id, plain_name
from harness.protocol import PROTOCOLS, Protocol, get_protocol
from harness.recipes import DEFAULT_RECIPE
from harness.results import ComponentRecord, PluginRecord, RecipeRecord
from harness.typed_json import parse_record, parse_value
from harness.files import read_json
from harness.rundir import RUN_FILE

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

# Upper bounds on options, each with the reason given when a value exceeds it.
LIMITS = {
    "size": (4096, "inputs above 4096 px are far beyond any benchmark's (the paper uses 384–512) and need "
                   "gigabytes per image"),
    "batch_size": (4096, "batches above 4096 images do not fit any accelerator at benchmark sizes"),
    "epochs": (1000, "the protocols train for 20–40 epochs; more than 1000 is a mistake"),
    "seed": (2**32 - 1, "seeds are 32-bit (numpy's seeding takes 0 … 2**32 - 1)"),
}
MIN_SIZE = 8
PRECISIONS = ("auto", "fp32", "bf16")


def setting(default: Any, help: str, *, flag: str | None = None, choices: tuple[str, ...] | None = None,
            path: bool = False, metavar: str | None = None) -> Any:
    """A ``RunConfig`` field with everything its command-line option needs, declared once.

    ``flag`` is the option's name (default ``--field-name``; ``--a/--no-a`` for a switch that
    defaults to on), ``choices`` its allowed values, ``path`` whether it names a file or folder.
    ``bench run``'s options, ``RunConfig.to_args``, ``--config`` files and the sweep grid's
    ``[run]`` keys are all read from these fields.
    """
    return field(default=default, metadata={"help": help, "flag": flag, "choices": choices, "path": path,
                                            "metavar": metavar})


def tf32_allowed(device: str | None, precision: str | None) -> bool:
    """TF32 matmuls are allowed on a GPU in bf16 only: fp32 there means strict fp32."""
    return str(device).startswith("cuda") and precision == "bf16"


@dataclass
class RunConfig:
    """One training run as the user asked for it. ``None`` fields take the protocol's defaults."""

    dataset: str = setting("shapes", "Dataset name (`bench plugins` lists them).")
    data_root: str | None = setting(None, "Folder holding the dataset in its official layout.", path=True)
    model: str | None = setting(None, "Model name, or timm:<name>. Default: the protocol's.")
    augmentation: str | None = setting(None, "Augmentation: flip (M1), crop (M2), mixup (M3). Default: the protocol's.",
                                       flag="--aug")
    loss: str | None = setting(None, "Training loss (`bench plugins` lists them). Default: the protocol's (bce); "
                                     "any other is recorded as a deviation.")
    recipe: str | None = setting(None, "Training recipe: optimizer, schedule, EMA (`bench plugins` lists them). "
                                       "Default: the protocol's (sgd-step); any other is recorded as a deviation.")
    size: int | None = setting(None, "Square input size. Default: the protocol's.")
    protocol: str = setting("smoke", "Training protocol (`bench protocol list`).")
    epochs: int | None = setting(None, "Override the protocol's epochs (recorded as a deviation).")
    batch_size: int | None = setting(None, "Override the protocol's global batch (recorded as a deviation).")
    seed: int = setting(0, "Random seed of the run (data order, augmentation draws, new layers).")
    device: str = setting("auto", "auto, cpu, cuda or cuda:N.")
    precision: str = setting("auto", "auto: bf16 autocast on a GPU, fp32 on a CPU. fp32 on a GPU turns TF32 off.",
                             choices=PRECISIONS)
    pretrained: str | None = setting(None, "imagenet, none, or a weights file. Default: the protocol's init.")
    out: str = setting("runs", "Folder for run folders.", path=True)
    run_id: str | None = setting(None, "Name of the run folder (a plain name). "
                                       "Default: dataset-model-aug-size-protocol-seedN.")
    plugins: tuple[str, ...] = setting((), "Load a plugin: a .py file, a package directory, an importable module or "
                                           "an entry-point name. Repeatable.", flag="--plugin", metavar="VALUE")
    no_plugins: tuple[str, ...] = setting((), "Do not load this installed plugin (its entry-point or distribution "
                                              "name), as BENCH_DISABLE_PLUGIN_AUTOLOAD=1 does for all. Repeatable.",
                                          flag="--no-plugin", metavar="NAME")
    skip_missing: bool = setting(False, "Leave out images whose files are missing (the coverage is recorded).")
    cache: bool = setting(True, "Keep decoded images on disk between runs, or decode into memory for this run only.",
                          flag="--cache/--no-cache")
    overwrite: bool = setting(False, "Replace a finished or unfinished run of the same id once the new one has "
                                     "finished (your own files in the folder stay).")
    loggers: tuple[str, ...] = setting((), "Send per-step loss and learning rates, per-epoch img/s and the final "
                                           "metrics to a logger: csv, tensorboard, wandb, mlflow (`bench plugins` "
                                           "lists them). Repeatable.", flag="--logger", metavar="NAME")

    @classmethod
    def from_options(cls, options: Mapping[str, Any], where: str = "") -> "RunConfig":
        """A ``RunConfig`` from settings given by name (``size=448`` or ``"batch-size": 8``), every
        name and type checked: an unknown name or a wrong type is one line naming it (``where``
        names the file the settings came from, else they are named as arguments)."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        types = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for key, value in options.items():
            name = key.replace("-", "_")
            label = f"{where}: {key!r}" if where else f"argument {key}"
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f"; the settings are {', '.join(known)}"
                raise UserError(f"{label} is not a run setting{hint}")
            if typing.get_origin(types[name]) is tuple:
                if isinstance(value, str) or not isinstance(value, (list, tuple)) or \
                        not all(isinstance(v, str) for v in value):
                    raise UserError(f"{label} {value!r}: give a list of names")
                values[name] = tuple(value)
                continue
            try:
                values[name] = parse_value(types[name], value, where or "run settings", key)
            except UserError as error:
                raise UserError(f"{label} {value!r}: expected {_type_name(types[name])}") from error
            choices = known[name].metadata["choices"]
            if choices and values[name] not in choices:
                raise UserError(f"{label} {value!r}: use {', '.join(choices)}")
        return cls(**values)

    @classmethod
    def from_file(cls, path: str | Path) -> "RunConfig":
        """The settings of a TOML file: ``bench run``'s option names as keys, at the top level or
        in a ``[run]`` table (the table a sweep grid gives every cell)."""
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as error:
            raise UserError(f"--config {path}: cannot read it ({one_line(error)})") from None
        except tomllib.TOMLDecodeError as error:
            raise UserError(f"--config {path}: not valid TOML ({one_line(error)})") from None
        table = data.pop("run", {})
        if not isinstance(table, dict):
            raise UserError(f"{path}: 'run' must be a table of run settings")
        both = sorted(set(table) & set(data))
        if both:
            raise UserError(f"{path}: {both[0]!r} is set both at the top level and in [run]; keep one")
        return cls.from_options({**data, **table}, str(path))

    @classmethod
    def from_run(cls, run_dir: str | Path, plugins: tuple[str, ...] = ()) -> "RunConfig":
        """The settings a run resolved to (its ``run.json``), as a ``RunConfig`` to run again with
        changes; the run id is derived anew. A plugin file or folder the run used is loaded only
        when named again in ``plugins`` (code a run folder names is never run on its own)."""
        resolved = ResolvedRun.read(run_dir)
        path = Path(run_dir) / RUN_FILE
        named = {str(Path(p).expanduser().resolve()) for p in plugins}
        for source in resolved.plugins:
            if source.plugin.source in ("file", "directory") and str(Path(source.value).resolve()) not in named:
                raise UserError(f"{path}: the run used plugin {source.value}; name it again with --plugin "
                                f"{source.value} (code a run folder names is not run on its own)")
        installed = tuple(p.value for p in resolved.plugins if p.plugin.source not in ("file", "directory"))
        kept = {f.name: getattr(resolved, f.name) for f in dataclasses.fields(cls)
                if f.name not in ("run_id", "plugins", "no_plugins", "overwrite") and hasattr(resolved, f.name)}
        kept = {name: tuple(value) if isinstance(value, list) else value for name, value in kept.items()}
        return cls(**kept, plugins=tuple(dict.fromkeys(installed + tuple(plugins))))

    def to_args(self, always: tuple[str, ...] = ()) -> list[str]:
        """The ``bench run`` options that give this config; settings at their default are left
        out unless named in ``always``."""
        args: list[str] = []
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if value is None or value == () or (value == spec.default and spec.name not in always):
                continue
            on, _, off = option_flag(spec).partition("/")
            if isinstance(value, bool):
                if value or off:
                    args.append(on if value else off)
            elif isinstance(value, tuple):
                args += [item for v in value for item in (on, str(v))]
            else:
                args += [on, str(value)]
        return args


    def resolve(self, registry) -> "ResolvedRun":
        """Every default filled, every value checked, the deviations computed; see the module docstring."""
        base = get_protocol(self.protocol)
        _check_ranges(self)
        if self.precision not in PRECISIONS:
            raise UserError(f"--precision {self.precision!r}: use {', '.join(PRECISIONS)}")
        dataset = registry.get("dataset", self.dataset)
        if self.data_root is not None and not dataset.spec.takes_data_root:
            raise UserError(f"dataset {self.dataset!r} takes no --data-root (it is generated); drop --data-root")
        model_name = self.model or base.default_model
        augmentation_name = self.augmentation or base.default_augmentation
        loss_name = self.loss or base.loss
        registry.get("model", model_name)
        registry.get("augmentation", augmentation_name)
        registry.get("loss", loss_name)
        recipe_name = self.recipe or DEFAULT_RECIPE
        registry.get("recipe", recipe_name)
        size = self.size or base.default_size
        pretrained = self.pretrained or base.init
        if pretrained not in ("imagenet", "none"):
            path = Path(pretrained).expanduser()
            if not path.is_file():
                raise UserError(f"--pretrained {pretrained}: no such file; give a weights file, imagenet or none")
            pretrained = str(path.resolve())
        rules = dataclasses.replace(base, epochs=self.epochs or base.epochs, batch_size=self.batch_size or base.batch_size)
        run_id = self.run_id or default_run_id(self.dataset, model_name, augmentation_name, size, base.name, self.seed,
                                               loss_name if loss_name != base.loss else None,
                                               recipe_name if recipe_name != DEFAULT_RECIPE else None)
        plain_name(run_id, "--run-id")
        from harness.loggers import resolve_names

        loggers = resolve_names(registry, self.loggers)
        return ResolvedRun(
            checked_protocol=base,
            dataset=self.dataset,
            data_root=str(Path(self.data_root).expanduser().resolve()) if self.data_root else None,
            model=model_name,
            augmentation=augmentation_name,
            loss=loss_name,
            size=size,
            protocol=base.name,
            protocol_hash=base.hash,
            epochs=rules.epochs,
            batch_size=rules.batch_size,
            pretrained=pretrained,
            seed=self.seed,
            device=self.device,
            precision=self.precision,
            skip_missing=self.skip_missing,
            cache=self.cache,
            out=str(Path(self.out).expanduser().resolve()),
            run_id=run_id,
            plugins=[_plugin_file(registry, value) for value in self.plugins],
            recipe=recipe_name,
            loggers=loggers,
        )


def option_flag(spec: dataclasses.Field) -> str:
    """The command-line flag of a ``RunConfig`` field (``--batch-size``, ``--cache/--no-cache``)."""
    return spec.metadata.get("flag") or "--" + spec.name.replace("_", "-")


def _type_name(annotation: Any) -> str:
    names = {int: "a whole number", str: "a string", bool: "true or false", float: "a number"}
    options = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    return " or ".join(names.get(a, getattr(a, "__name__", str(a))) for a in options)

def _check_ranges(settings, where: str = "") -> None:
    """Every bounded setting of ``settings`` (a RunConfig or a ResolvedRun) within its limits;
    ``where`` names the file a stored run came from (else the option is named)."""
    minimum = {"size": MIN_SIZE, "batch_size": 1, "epochs": 1, "seed": 0}
    for name, (maximum, reason) in LIMITS.items():
        value = getattr(settings, name)
        if value is None:
            continue
        option = f"{where}: {name}" if where else "--" + name.replace("_", "-")
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{option} {value!r}: give a whole number")
        if value < minimum[name]:
            raise UserError(f"{option} {value}: the smallest allowed is {minimum[name]}")
        if value > maximum:
            raise UserError(f"{option} {value}: the largest allowed is {maximum}; {reason}")


def deviations(rules: Protocol, *, epochs: int, batch_size: int, size: int, init: str,
               loss: ComponentRecord, recipe: RecipeRecord | None = None) -> dict[str, dict[str, Any]]:
    """Every way a run departs from protocol ``rules``: ``{field: {"protocol": …, "used": …}}``
    for epochs, batch size, a size outside the protocol's sizes, the initialisation the weights
    show, and a loss other than the protocol's (with its version and plugin). The runner, and
    the leaderboard checking a submission, compute them with this one function. A recipe
    other than the protocol's ``sgd-step`` is one too, with its version, plugin and EMA decay
    (a record without a recipe block trained with ``sgd-step``)."""
    found: dict[str, dict[str, Any]] = {}
    for name, used in (("epochs", epochs), ("batch_size", batch_size)):
        if used != getattr(rules, name):
            found[name] = {"protocol": getattr(rules, name), "used": used}
    if size not in rules.sizes:
        found["sizes"] = {"protocol": list(rules.sizes), "used": [size]}
    if init != rules.init:
        found["init"] = {"protocol": rules.init, "used": init}
    if loss.name != rules.loss:
        found["loss"] = {"protocol": rules.loss, "used": loss.name, "version": loss.version,
                         "plugin": dataclasses.asdict(loss.plugin)}
    if recipe is not None and recipe.name != DEFAULT_RECIPE:
        found["recipe"] = {"protocol": DEFAULT_RECIPE, "used": recipe.name, "version": recipe.version,
                           "plugin": dataclasses.asdict(recipe.plugin), "ema_decay": recipe.ema_decay}
    return found


@dataclass(frozen=True, kw_only=True)
class PluginSource:
    """A ``--plugin`` value as the run used it; files and folders carry their code's sha256,
    which ``--resume`` checks before importing them again."""

    value: str
    plugin: PluginRecord


def _plugin_file(registry, value: str) -> PluginSource:
    found = next((p for p in registry.plugins if p.requested and (p.name == value or p.entry_point == value)), None)
    if found is None or found.error:
        registry.check_requested()
        raise UserError(f"--plugin {value}: not loaded")
    record = found.provenance()
    if found.source in ("file", "directory") and found.path:
        return PluginSource(value=found.path, plugin=record)
    return PluginSource(value=value, plugin=record)


@dataclass(frozen=True, kw_only=True)
class ResolvedRun:
    """Every setting of one run, resolved (``run.json``). ``fingerprint`` is the dataset's,
    filled in once the data is loaded, so that a resumed run refuses other data."""

    dataset: str
    data_root: str | None
    model: str
    augmentation: str
    loss: str
    size: int
    protocol: str
    protocol_hash: str
    epochs: int
    batch_size: int
    pretrained: str
    seed: int
    device: str
    precision: str
    skip_missing: bool
    cache: bool
    out: str
    run_id: str
    plugins: list[PluginSource] = field(default_factory=list)
    fingerprint: str | None = None
    recipe: str = DEFAULT_RECIPE
    loggers: list[str] = field(default_factory=list)  # watch the run; never change its results
    # Not stored (run.json keeps the settings as asked): the named protocol as this harness
    # defines it, attached once when its hash is the recorded one; and the device and
    # precision chosen once the processes are known (``with_device``).
    checked_protocol: Protocol | None = field(default=None, compare=False, repr=False, metadata={"stored": False})
    chosen_device: str | None = field(default=None, compare=False, repr=False, metadata={"stored": False})
    chosen_precision: str | None = field(default=None, compare=False, repr=False, metadata={"stored": False})

    def __post_init__(self) -> None:
        """Attach the protocol, looked up once, unless it was passed (``resolve``, ``replace``)."""
        carried = self.checked_protocol
        if carried is not None and carried.name == self.protocol and carried.hash == self.protocol_hash:
            return
        defined = get_protocol(self.protocol) if self.protocol in PROTOCOLS else None
        object.__setattr__(self, "checked_protocol",
                           defined if defined is not None and defined.hash == self.protocol_hash else None)

    @property
    def run_dir(self) -> Path:
        return Path(self.out) / self.run_id

    @property
    def base_protocol(self) -> Protocol:
        """The named protocol, checked: its hash must still be the one recorded."""
        if self.checked_protocol is None:
            defined = PROTOCOLS.get(self.protocol)
            if defined is None:
                raise UserError(f"run {self.run_id}: unknown protocol {self.protocol!r}; known: {', '.join(sorted(PROTOCOLS))}")
            raise UserError(
                f"run {self.run_id}: protocol {self.protocol!r} had hash {self.protocol_hash} when the run started, "
                f"this harness defines {defined.hash}; finish it with the harness version that started it"
            )
        return self.checked_protocol

    def rules(self) -> Protocol:
        """The protocol this run trains under: the named protocol with this run's epochs and
        batch size (its hash must still be the one recorded)."""
        return dataclasses.replace(self.base_protocol, epochs=self.epochs, batch_size=self.batch_size)

    @property
    def tf32(self) -> bool:
        """Whether TF32 matmuls are allowed for the chosen device and precision (``tf32_allowed``)."""
        return tf32_allowed(self.chosen_device, self.chosen_precision)

    def with_device(self, device: str, precision: str) -> "ResolvedRun":
        """This run with the device (``cpu``, ``cuda:0``) and precision (fp32, bf16) it trains with."""
        return dataclasses.replace(self, chosen_device=device, chosen_precision=precision)

    def deviations(self, init: str, loss: ComponentRecord,
                   recipe: RecipeRecord | None = None) -> dict[str, dict[str, Any]]:
        """This run's deviations from its protocol, given the initialisation its weights show
        and the loss and recipe it trained with (see ``deviations``)."""
        return deviations(self.base_protocol, epochs=self.epochs, batch_size=self.batch_size, size=self.size,
                          init=init, loss=loss, recipe=recipe)

    def to_dict(self) -> dict[str, Any]:
        stored = [f.name for f in dataclasses.fields(self) if f.metadata.get("stored", True)]
        return {name: value for name, value in dataclasses.asdict(self).items() if name in stored}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> "ResolvedRun":
        """A stored resolved run, every key, type and range checked (``run.json`` may come from anyone)."""
        resolved = parse_record(cls, data, where)
        plain_name(resolved.run_id, f"{where}: run_id")
        _check_ranges(resolved, where)
        return resolved

    @classmethod
    def read(cls, run_dir: str | Path) -> "ResolvedRun":
        """The resolved run stored in ``run_dir/run.json`` (validated: run folders travel)."""
        if not Path(run_dir).is_dir():
            raise UserError(f"{run_dir}: no such run folder")
        path = Path(run_dir) / RUN_FILE
        return cls.from_dict(read_json(path, "run file"), str(path))

    def with_fingerprint(self, value: str) -> "ResolvedRun":
        return dataclasses.replace(self, fingerprint=value)

    def check_plugin_files(self) -> None:
        """Refuse a recorded plugin file or folder whose code changed since the run started."""
        for source in self.plugins:
            if source.plugin.source not in ("file", "directory"):
                continue
            path = Path(source.value)
            found = code_sha256(path, source.plugin.source)
            if found != source.plugin.sha256:
                now = "is gone" if found is None else f"has sha256 {found[:12]}…"
                raise UserError(
                    f"plugin {path} {now}, but the run was started with sha256 {str(source.plugin.sha256)[:12]}…; "
                    "restore that file (the run must finish with the code it started with) or start a new run"
                )
