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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.naming import code_sha256, default_run_id, plain_name
from harness.protocol import Protocol, get_protocol
from harness.results import ComponentRecord, PluginRecord, parse_record

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


@dataclass
class RunConfig:
    """One training run as the user asked for it. ``None`` fields take the protocol's defaults."""

    dataset: str = "shapes"
    data_root: str | None = None
    model: str | None = None
    augmentation: str | None = None
    loss: str | None = None
    size: int | None = None
    protocol: str = "smoke"
    epochs: int | None = None
    batch_size: int | None = None
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    pretrained: str | None = None  # "imagenet", "none" or a file path
    out: str = "runs"
    run_id: str | None = None
    plugins: tuple[str, ...] = ()
    skip_missing: bool = False
    cache: bool = True
    overwrite: bool = False
    loggers: tuple[str, ...] = ()

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
        loss = registry.get("loss", loss_name)
        size = self.size or base.default_size
        pretrained = self.pretrained or base.init
        if pretrained not in ("imagenet", "none"):
            path = Path(pretrained).expanduser()
            if not path.is_file():
                raise UserError(f"--pretrained {pretrained}: no such file; give a weights file, imagenet or none")
            pretrained = str(path.resolve())
        rules = dataclasses.replace(base, epochs=self.epochs or base.epochs, batch_size=self.batch_size or base.batch_size)
        run_id = self.run_id or default_run_id(self.dataset, model_name, augmentation_name, size, base.name, self.seed,
                                               loss_name if loss_name != base.loss else None)
        plain_name(run_id, "--run-id")
        from harness.loggers import resolve_names

        loggers = resolve_names(registry, self.loggers)
        return ResolvedRun(
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
            loggers=loggers,
        )


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
               loss: ComponentRecord) -> dict[str, dict[str, Any]]:
    """Every way a run departs from protocol ``rules``: ``{field: {"protocol": …, "used": …}}``
    for epochs, batch size, a size outside the protocol's sizes, the initialisation the weights
    show, and a loss other than the protocol's (with its version and plugin). The runner, and
    the leaderboard checking a submission, compute them with this one function."""
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
    loggers: list[str] = field(default_factory=list)  # watch the run; never change its results

    @property
    def run_dir(self) -> Path:
        return Path(self.out) / self.run_id

    def rules(self) -> Protocol:
        """The protocol this run trains under: the named protocol with this run's epochs and
        batch size (its hash must still be the one recorded)."""
        base = get_protocol(self.protocol)
        if base.hash != self.protocol_hash:
            raise UserError(
                f"run {self.run_id}: protocol {self.protocol!r} had hash {self.protocol_hash} when the run started, "
                f"this harness defines {base.hash}; finish it with the harness version that started it"
            )
        return dataclasses.replace(base, epochs=self.epochs, batch_size=self.batch_size)

    def deviations(self, init: str, loss: ComponentRecord) -> dict[str, dict[str, Any]]:
        """This run's deviations from its protocol, given the initialisation its weights show
        and the loss it trained with (see ``deviations``)."""
        return deviations(get_protocol(self.protocol), epochs=self.epochs, batch_size=self.batch_size, size=self.size,
                          init=init, loss=loss)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str) -> "ResolvedRun":
        """A stored resolved run, every key, type and range checked (``run.json`` may come from anyone)."""
        resolved = parse_record(cls, data, where)
        plain_name(resolved.run_id, f"{where}: run_id")
        _check_ranges(resolved, where)
        return resolved

    def with_fingerprint(self, value: str) -> "ResolvedRun":
        return dataclasses.replace(self, fingerprint=value)

    def check_plugin_files(self) -> None:
        """Refuse a recorded plugin file or folder whose code changed since the run started."""
        for source in self.plugins:
            if source.plugin.source not in ("file", "directory"):
                continue
            path = Path(source.value)
            found = code_sha256(path) if path.is_file() == (source.plugin.source == "file") else None
            if found != source.plugin.sha256:
                now = "is gone" if found is None else f"has sha256 {found[:12]}…"
                raise UserError(
                    f"plugin {path} {now}, but the run was started with sha256 {str(source.plugin.sha256)[:12]}…; "
                    "restore that file (the run must finish with the code it started with) or start a new run"
                )
