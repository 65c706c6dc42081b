"""Plugin loading and the component registry.

Plugins come from three places, all loaded the same way: the entry-point group
``multilabel_bench`` (the built-ins in ``plugins/`` are registered there by this
distribution, exactly as a third-party package would), and ``--plugin VALUE`` where VALUE
is a ``.py`` file, a package directory, an importable module or an entry-point name.

A plugin that fails to import is recorded as failed, not raised: commands that do not need
it keep working, and a command that asks for a component it might have provided reports it.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import importlib
import importlib.metadata as metadata
import importlib.util
import inspect
import re
import sys
import traceback
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterable, Iterator

import pluggy

from harness import hookspecs
from harness.errors import PluginError, UserError, one_line
from harness.naming import code_sha256
from harness.results import ComponentRecord, PluginRecord
from harness.specs import COMPONENT_KINDS, INPUT_CROPS

ENTRY_POINT_GROUP = hookspecs.PROJECT
THIS_DISTRIBUTION = "multilabel-bench"
_HOOK_FOR_KIND = {
    "dataset": "register_datasets",
    "model": "register_models",
    "augmentation": "register_augmentations",
    "loss": "register_losses",
    "fusion": "register_fusions",
}
_COMPONENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")
# The core's own modules, imported before any plugin so that a plugin which patches them
# at import is caught (see ``Registry._changes_to_core``).
_CORE_MODULES = ("harness.train", "harness.runner", "harness.config", "harness.pipeline", "harness.metrics",
                 "harness.results", "harness.weights", "harness.honesty", "harness.data", "harness.fusion")


@dataclass
class Plugin:
    """One loaded (or failed) plugin and where it came from."""

    name: str
    source: str  # "built-in", "distribution", "file", "directory" or "module"
    requested: bool = False  # named with --plugin
    distribution: str | None = None
    distribution_version: str | None = None
    entry_point: str | None = None  # the entry-point name it was loaded from
    path: str | None = None
    sha256: str | None = None
    error: str | None = None
    error_traceback: str | None = None
    components: list["Component"] = field(default_factory=list)
    module: ModuleType | None = field(default=None, repr=False)
    changed_core: list[str] = field(default_factory=list)  # core attributes it replaced at import

    @property
    def status(self) -> str:
        return "failed" if self.error else "ok"

    @cached_property
    def code_sha256(self) -> str | None:
        """The sha256 of the plugin's code: the file, or every ``.py`` file of its package."""
        if self.sha256 is not None:
            return self.sha256
        return _source_sha256(self.module) if self.module is not None else None

    def provenance(self) -> PluginRecord:
        """What a result record stores about a plugin: where it came from and its code's hash."""
        return PluginRecord(
            name=self.name, source=self.source, distribution=self.distribution,
            distribution_version=self.distribution_version, path=self.path, sha256=self.code_sha256,
        )


@dataclass
class Component:
    """A registered spec and the plugin that registered it."""

    kind: str
    spec: Any
    plugin: Plugin

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def label(self) -> str:
        """``model 'csra' (plugin 'csra_plugin')``: how messages name the component."""
        return f"{self.kind} {self.name!r} (plugin {self.plugin.name!r})"

    def provenance(self, name: str | None = None) -> ComponentRecord:
        return ComponentRecord(name=name or self.spec.name, version=self.spec.version, plugin=self.plugin.provenance())

    @contextlib.contextmanager
    def guard(self, what: str) -> Iterator[None]:
        """Run plugin code: anything it raises (``SystemExit`` and ``KeyboardInterrupt``
        included) becomes one ``PluginError`` line naming this component and its plugin.

        A ``UserError`` the plugin raises on purpose passes through unchanged.
        """
        try:
            yield
        except UserError:
            raise
        except (Exception, SystemExit, KeyboardInterrupt) as error:
            raise PluginError(f"{self.label}: {what} {_failure(error)}; `bench --verbose` shows the traceback") from error

    def call(self, what: str, function: Callable, *args, **kwargs):
        """``function(*args, **kwargs)`` under ``guard(what)``."""
        with self.guard(what):
            return function(*args, **kwargs)

    def accepts(self, function: Callable, keyword: str) -> bool:
        """Whether ``function`` declares a keyword parameter ``keyword`` (``build(..., dataset=None)``)."""
        try:
            parameters = inspect.signature(function).parameters
        except (TypeError, ValueError):
            return False
        found = parameters.get(keyword)
        return found is not None and found.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def _failure(error: BaseException) -> str:
    """How a plugin failed, as the end of a sentence: ``raised ValueError: ...``, ``called sys.exit(0)``."""
    if isinstance(error, (SystemExit, KeyboardInterrupt)):
        return one_line(error)
    return f"raised {one_line(error)}"


def _source_sha256(module: ModuleType) -> str | None:
    """sha256 of a module's file, or of every ``.py`` file of the package it is the ``__init__`` of."""
    file = getattr(module, "__file__", None)
    if not file:
        return None
    path = Path(file)
    return code_sha256(path.parent if path.name == "__init__.py" else path)


def _core_snapshot() -> dict[str, int]:
    """``{"harness.train.Trainer.train_epoch": id(value), ...}``: every attribute of the core's
    loaded modules and of the classes they define, so that replacements can be found."""
    snapshot = {}
    for module_name, module in list(sys.modules.items()):
        if module is None or not (module_name == "harness" or module_name.startswith("harness.")):
            continue
        for attribute, value in list(vars(module).items()):
            if isinstance(value, ModuleType):
                continue
            snapshot[f"{module_name}.{attribute}"] = id(value)
            if inspect.isclass(value) and value.__module__ == module_name:
                for member, member_value in list(vars(value).items()):
                    snapshot[f"{module_name}.{attribute}.{member}"] = id(member_value)
    return snapshot


class Registry:
    """All plugins and the components they registered, keyed by (kind, name)."""

    def __init__(self, extra_plugins: Iterable[str] = ()):
        self.plugins: list[Plugin] = []
        self._components: dict[str, dict[str, list[Component]]] = {
            kind: {} for kind in COMPONENT_KINDS
        }
        self._manager = pluggy.PluginManager(hookspecs.PROJECT)
        self._manager.add_hookspecs(hookspecs)
        for module_name in _CORE_MODULES:
            importlib.import_module(module_name)
        entry_points = list(metadata.entry_points(group=ENTRY_POINT_GROUP))
        for entry_point in entry_points:
            self._load_entry_point(entry_point)
        for value in extra_plugins:
            self._load_requested(value, entry_points)

    # -- loading -----------------------------------------------------------------------

    def _load_entry_point(self, entry_point: metadata.EntryPoint) -> None:
        dist = entry_point.dist
        dist_name = dist.metadata["Name"] if dist is not None else None
        builtin = dist_name is not None and dist_name.lower() == THIS_DISTRIBUTION
        plugin = Plugin(
            name=entry_point.value if builtin else entry_point.name,
            source="built-in" if builtin else "distribution",
            distribution=dist_name,
            distribution_version=dist.version if dist is not None else None,
            entry_point=entry_point.name,
        )
        self._register(plugin, entry_point.load)

    def _load_requested(self, value: str, entry_points: list[metadata.EntryPoint]) -> None:
        path = Path(value).expanduser()
        if value.endswith(".py") or path.is_file():
            plugin = Plugin(name=value, source="file", requested=True, path=str(path.resolve()))
            if not path.is_file():
                self._fail(plugin, f"no such plugin file: {value}")
                return
            if self._claim_loaded(path):
                return
            plugin.sha256 = code_sha256(path)
            self._register(plugin, lambda: _import_file(path, path.stem, None))
            return
        if path.is_dir():
            plugin = Plugin(name=value, source="directory", requested=True, path=str(path.resolve()))
            init = path / "__init__.py"
            if not init.is_file():
                self._fail(plugin, f"plugin directory {value} has no __init__.py; pass a package folder or a .py file")
                return
            if self._claim_loaded(init):
                return
            plugin.sha256 = code_sha256(path)
            self._register(plugin, lambda: _import_file(init, path.name, [str(path)]))
            return
        entry_point_names = sorted({entry_point.name for entry_point in entry_points})
        if value in entry_point_names:
            for plugin in self.plugins:
                if plugin.entry_point == value:
                    plugin.requested = True
            return
        plugin = Plugin(name=value, source="module", requested=True)
        if importlib.util.find_spec(value.split(".")[0]) is None:
            close = difflib.get_close_matches(value, entry_point_names, n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            self._fail(plugin, f"no such plugin file, package directory, module or entry point: {value!r}{hint}")
            return

        def load_module() -> ModuleType:
            module = importlib.import_module(value)
            plugin.path = getattr(module, "__file__", None)
            if plugin.path:
                plugin.sha256 = code_sha256(plugin.path)
            return module

        self._register(plugin, load_module)

    def _claim_loaded(self, path: Path) -> bool:
        """Mark the plugin already loaded from file ``path`` as requested: one plugin, not a duplicate."""
        for plugin in self.plugins:
            file = getattr(plugin.module, "__file__", None)
            if file and Path(file).resolve() == path.resolve():
                plugin.requested = True
                return True
        return False

    def _fail(self, plugin: Plugin, message: str, tb: str | None = None) -> None:
        plugin.error = message
        plugin.error_traceback = tb
        self.plugins.append(plugin)

    def _register(self, plugin: Plugin, load) -> None:
        module = None
        before = _core_snapshot()
        try:
            module = load()
            owner = next((p for p in self.plugins if p.module is module), None)
            if owner is not None:  # the same module named a second way: one plugin, not a duplicate
                owner.requested = owner.requested or plugin.requested
                return
            self._manager.register(module, name=f"{plugin.source}:{plugin.name}")
            self._manager.check_pending()  # a hookimpl whose name matches no hook
        except (Exception, SystemExit, KeyboardInterrupt) as error:  # a broken plugin must not break unrelated commands
            if module is not None and self._manager.is_registered(module):
                self._manager.unregister(module)
            reason = f"{_failure(error)} at import" if isinstance(error, (SystemExit, KeyboardInterrupt)) else one_line(error)
            self._fail(plugin, reason, traceback.format_exc())
            return
        after = _core_snapshot()
        plugin.changed_core = sorted(key for key, value in before.items() if after.get(key, value) != value)
        plugin.module = module
        self.plugins.append(plugin)
        for kind, hook_name in _HOOK_FOR_KIND.items():
            for implementation in getattr(self._manager.hook, hook_name).get_hookimpls():
                if implementation.plugin is module:
                    self._call_hook(plugin, kind, hook_name, implementation.function)

    def _call_hook(self, plugin: Plugin, kind: str, hook_name: str, function) -> None:
        """Call one ``@hookimpl``; if it raises, none of what it registered stays usable."""
        registered: list[Component] = []
        try:
            function(register=self._register_callback(plugin, kind, registered))
        except (Exception, SystemExit, KeyboardInterrupt) as error:
            for component in registered:
                plugin.components.remove(component)
                self._components[kind][component.name].remove(component)
                if not self._components[kind][component.name]:
                    del self._components[kind][component.name]
            plugin.error = f"{hook_name} {_failure(error)}"
            plugin.error_traceback = traceback.format_exc()

    def _register_callback(self, plugin: Plugin, kind: str, registered: list[Component]):
        spec_type = COMPONENT_KINDS[kind]

        def register(spec) -> None:
            if not isinstance(spec, spec_type):
                raise PluginError(
                    f"plugin {plugin.name!r} registered a {type(spec).__name__} where a "
                    f"{spec_type.__name__} was expected"
                )
            if not isinstance(spec.name, str) or not _COMPONENT_NAME.fullmatch(spec.name):
                raise PluginError(
                    f"plugin {plugin.name!r}: {kind} name {spec.name!r} must be letters, digits and . _ + - "
                    "(starting with a letter or digit; ':' separates a variant on the command line)"
                )
            if kind == "augmentation" and spec.input_crop not in INPUT_CROPS:
                raise PluginError(
                    f"plugin {plugin.name!r}: augmentation {spec.name!r} has input_crop {spec.input_crop!r}; "
                    f"use one of {', '.join(map(repr, INPUT_CROPS))}"
                )
            if kind == "augmentation" and not isinstance(spec.input_flip, bool):
                raise PluginError(f"plugin {plugin.name!r}: augmentation {spec.name!r} has input_flip "
                                  f"{spec.input_flip!r}; use True or False")
            component = Component(kind, spec, plugin)
            registered.append(component)
            plugin.components.append(component)
            self._components[kind].setdefault(spec.name, []).append(component)

        return register

    # -- lookup ------------------------------------------------------------------------

    def components(self, kind: str) -> list[Component]:
        """Every registered component of a kind, duplicates included, sorted by name."""
        return sorted(
            (c for same in self._components[kind].values() for c in same), key=lambda c: c.name
        )

    def failed(self) -> list[Plugin]:
        return [p for p in self.plugins if p.error]

    def check_core_unchanged(self) -> None:
        """Refuse to train when a plugin replaced part of the harness at import: plugins
        register components; they do not change the trainer, the protocol or the metrics."""
        for plugin in self.plugins:
            if plugin.changed_core:
                shown = ", ".join(plugin.changed_core[:3]) + (", …" if len(plugin.changed_core) > 3 else "")
                raise PluginError(
                    f"plugin {plugin.name!r} replaced {shown} when it was imported; a plugin may register "
                    "components (see CONTRIBUTING.md), never change the harness itself"
                )

    def provenance(self) -> list[PluginRecord]:
        """Every plugin loaded, with its source and code hash: what a result records."""
        return [plugin.provenance() for plugin in self.plugins if not plugin.error]

    def check_requested(self) -> None:
        """Fail when a plugin named with ``--plugin`` did not load: the command needs it."""
        for plugin in self.plugins:
            if plugin.requested and plugin.error:
                raise PluginError(f"plugin {plugin.name!r} failed to load: {plugin.error}")

    def get(self, kind: str, name: str) -> Component:
        """Resolve ``name`` to one component of ``kind``, or raise a one-line ``UserError``.

        ``NAME:VARIANT`` resolves ``NAME`` when that component takes variants.
        """
        self.check_requested()
        base = name.split(":", 1)[0]
        found = self._components[kind].get(base, [])
        if len(found) > 1:
            where = " and ".join(f"plugin {c.plugin.name!r}" for c in found)
            raise PluginError(f"{kind} {base!r} is registered twice, by {where}; uninstall or rename one")
        if found:
            component = found[0]
            takes_variant = getattr(component.spec, "takes_variant", False)
            if ":" in name and not takes_variant:
                raise UserError(f"{kind} {base!r} takes no variant; use --{kind} {base}")
            if takes_variant and ":" not in name:
                raise UserError(f"{kind} {base!r} needs a variant, e.g. {base}:resnet50")
            return component
        known = sorted(self._components[kind])
        message = f"unknown {kind} {name!r}"
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        message += f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(known) or 'none'}"
        failed = self.failed()
        if failed:
            message += " (failed plugins: " + "; ".join(f"{p.name}: {p.error}" for p in failed) + ")"
        message += " — `bench plugins` lists every component"
        raise UserError(message)


def _import_file(path: Path, stem: str, search_locations: list[str] | None) -> ModuleType:
    module_name = f"multilabel_bench_plugin_{stem}_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(
        module_name, path, submodule_search_locations=search_locations
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module
