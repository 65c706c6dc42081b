"""Plugin loading and the component registry.

Plugins come from three places, all loaded the same way: the entry-point group
``multilabel_bench`` (the built-ins in ``plugins/`` are registered there by this
distribution, exactly as a third-party package would), and ``--plugin VALUE`` where VALUE
is a ``.py`` file, a package directory, an importable module or an entry-point name.

Plugin code is imported offline (``harness.weights.no_network``). A plugin that fails to
import is recorded as failed, not raised: commands that do not need
it keep working, and a command that asks for a component it might have provided reports it.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import hashlib
import importlib
import importlib.metadata as metadata
import importlib.util
import inspect
import json
import os
import re
import site
import sys
import sysconfig
import traceback
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterable, Iterator

import pluggy

from harness import hookspecs
from harness.declared import check_spec
from harness.errors import PluginError, UserError, one_line
from harness.naming import code_sha256, sha256_of
from harness.results import ComponentRecord, PluginRecord
from harness.specs import (
    INPUT_CROPS,
    AugmentationSpec,
    DatasetSpec,
    FusionSpec,
    LoggerSpec,
    LossSpec,
    ModelSpec,
    RecipeSpec,
)
from harness.weights import no_network

ENTRY_POINT_GROUP = hookspecs.PROJECT
THIS_DISTRIBUTION = "multilabel-bench"


@dataclass(frozen=True)
class ComponentKind:
    """One kind of component: the spec a plugin registers, the hook it registers it from, the
    command-line option that picks one by name (``None``: chosen some other way), and its
    ``bench check`` checks as ``module:function`` (imported only by ``bench check``)."""

    name: str
    spec: type
    hook: str
    option: str | None
    checks: str


# The one table of component kinds, read by plugin loading here and by `bench check`.
KINDS: dict[str, ComponentKind] = {kind.name: kind for kind in (
    ComponentKind("dataset", DatasetSpec, "register_datasets", "--dataset", "harness.check.dataset:check_dataset"),
    ComponentKind("model", ModelSpec, "register_models", "--model", "harness.check.model:check_model"),
    ComponentKind("augmentation", AugmentationSpec, "register_augmentations", "--aug", "harness.check.augmentation:check_augmentation"),
    ComponentKind("loss", LossSpec, "register_losses", "--loss", "harness.check.loss:check_loss"),
    ComponentKind("fusion", FusionSpec, "register_fusions", "--method", "harness.check.fusion:check_fusion"),
    ComponentKind("recipe", RecipeSpec, "register_recipes", "--recipe", "harness.check.recipe:check_recipe"),
    ComponentKind("logger", LoggerSpec, "register_loggers", "--logger", "harness.check.logger:check_logger"),
)}
_COMPONENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")
# The core's own modules, imported before any plugin so that a plugin which patches them
# at import is caught (see ``Registry._changes_to_core``).
_CORE_MODULES = ("harness.train", "harness.runner", "harness.config", "harness.pipeline", "harness.metrics",
                 "harness.results", "harness.weights", "harness.honesty", "harness.data", "harness.fusion")
# The parts of torch that decide how a model trains outside the recipe and the loss: the
# optimizers, their schedules and the functional losses. Watched like the core's modules
# by a registry made with ``watch_torch=True`` (the commands that train import torch anyway).
_WATCHED_TORCH = ("torch.optim", "torch.nn.functional")


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
    disabled: bool = False  # an installed plugin switched off (--no-plugin, BENCH_DISABLE_PLUGIN_AUTOLOAD)

    @property
    def status(self) -> str:
        return "failed" if self.error else "disabled" if self.disabled else "ok"

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
        return ComponentRecord(name=name or self.spec.name, version=self.spec.version, plugin=self.plugin.provenance(),
                               params=json.loads(json.dumps(getattr(self.spec, "params", {}))),
                               upstream=getattr(self.spec, "upstream", None))

    @contextlib.contextmanager
    def guard(self, what: str) -> Iterator[None]:
        """Run plugin code: anything it raises (``SystemExit`` included) becomes one
        ``PluginError`` line naming this component and its plugin.

        A ``UserError`` the plugin raises on purpose passes through unchanged, and so does a
        ``KeyboardInterrupt``: Ctrl-C lands in whatever code runs, most often a plugin's.
        """
        try:
            yield
        except (UserError, KeyboardInterrupt):
            raise
        except (Exception, SystemExit) as error:
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


def _check_recipe_spec(plugin: Plugin, spec) -> None:
    """A recipe's callables are callable and its EMA decay, when given, lies in (0, 1)."""
    for name in ("make_optimizer", "make_scheduler"):
        value = getattr(spec, name)
        if not callable(value) and not (name == "make_scheduler" and value is None):
            raise PluginError(f"plugin {plugin.name!r}: recipe {spec.name!r} {name} is {type(value).__name__}, not a function")
    decay = spec.ema_decay
    if decay is not None and (isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 < decay < 1):
        raise PluginError(f"plugin {plugin.name!r}: recipe {spec.name!r} ema_decay {decay!r} must be a number between 0 "
                          "and 1 (0.999 is typical) or None")


def _source_sha256(module: ModuleType) -> str | None:
    """sha256 of a module's file, or of every ``.py`` file of the package it is the ``__init__`` of."""
    file = getattr(module, "__file__", None)
    if not file:
        return None
    path = Path(file)
    return code_sha256(path.parent if path.name == "__init__.py" else path)


def _watched(module_name: str) -> bool:
    return any(module_name == prefix or module_name.startswith(prefix + ".") for prefix in ("harness", *_WATCHED_TORCH))


def _unhooked(value: Any) -> Any:
    """``value`` without the profiling wrapper torch itself puts on an optimizer class's
    ``step`` when the first optimizer of that class is made (recognised by its source file)."""
    code = getattr(value, "__code__", None)
    optimizer_module = sys.modules.get("torch.optim.optimizer")
    if (getattr(value, "hooked", False) and code is not None and optimizer_module is not None
            and code.co_filename == optimizer_module.__file__):
        return getattr(value, "__wrapped__", value)
    return value


def _core_snapshot() -> dict[str, int]:
    """``{"harness.train.Trainer.train_epoch": id(value), ...}``: every attribute of the core's
    loaded modules (and of torch's watched ones) and of the classes they define, so that
    replacements can be found. A module's private plain values (``_auto_bars``) are its own
    state, which it changes as it works, and are left out."""
    snapshot = {}
    for module_name, module in list(sys.modules.items()):
        if module is None or not _watched(module_name):
            continue
        for attribute, value in list(vars(module).items()):
            if isinstance(value, ModuleType) or (attribute.startswith("_") and not callable(value)):
                continue
            snapshot[f"{module_name}.{attribute}"] = id(value)
            if inspect.isclass(value) and value.__module__ == module_name:
                for member, member_value in list(vars(value).items()):
                    snapshot[f"{module_name}.{attribute}.{member}"] = id(_unhooked(member_value))
    return snapshot


def autoload_disabled() -> bool:
    """Whether ``BENCH_DISABLE_PLUGIN_AUTOLOAD`` is set: installed third-party plugins then load
    only when named with ``--plugin`` (the built-ins always load), as pytest's variable does."""
    return os.environ.get("BENCH_DISABLE_PLUGIN_AUTOLOAD", "") not in ("", "0")


class Registry:
    """All plugins and the components they registered, keyed by (kind, name).

    ``disabled`` names installed plugins (entry-point or distribution names) not to load,
    as ``--no-plugin NAME`` does; a built-in cannot be switched off."""

    def __init__(self, extra_plugins: Iterable[str] = (), disabled: Iterable[str] = (), *,
                 watch_torch: bool = False):
        self.plugins: list[Plugin] = []
        self._components: dict[str, dict[str, list[Component]]] = {
            kind: {} for kind in KINDS
        }
        self._manager = pluggy.PluginManager(hookspecs.PROJECT)
        self._manager.add_hookspecs(hookspecs)
        for module_name in _CORE_MODULES + (("torch.optim.lr_scheduler", "torch.nn.functional") if watch_torch else ()):
            importlib.import_module(module_name)
        self._core = _core_snapshot()  # before any plugin: what ``check_core_intact`` compares with
        self._modules_before = set(sys.modules)
        entry_points = list(metadata.entry_points(group=ENTRY_POINT_GROUP))
        extra_plugins = list(extra_plugins)
        off = {name.lower() for name in disabled}
        for entry_point in entry_points:
            dist = entry_point.dist.metadata["Name"].lower() if entry_point.dist is not None else None
            if dist != THIS_DISTRIBUTION and entry_point.name not in extra_plugins and (
                    autoload_disabled() or entry_point.name.lower() in off or dist in off):
                self.plugins.append(Plugin(name=entry_point.name, source="distribution", disabled=True,
                                           distribution=entry_point.dist.metadata["Name"] if dist else None,
                                           distribution_version=entry_point.dist.version if dist else None,
                                           entry_point=entry_point.name))
                continue
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
            try:
                plugin.sha256 = code_sha256(path)
            except UserError as error:  # a link or an odd file name in the package
                self._fail(plugin, str(error))
                return
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
            with no_network():
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
        for kind in KINDS.values():
            for implementation in getattr(self._manager.hook, kind.hook).get_hookimpls():
                if implementation.plugin is module:
                    self._call_hook(plugin, kind.name, kind.hook, implementation.function)

    def _call_hook(self, plugin: Plugin, kind: str, hook_name: str, function) -> None:
        """Call one ``@hookimpl``; if it raises, none of what it registered stays usable."""
        registered: list[Component] = []
        try:
            with no_network():
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
        spec_type = KINDS[kind].spec

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
            if kind == "recipe":
                _check_recipe_spec(plugin, spec)
            if kind in ("model", "loss"):
                check_spec(spec, kind, plugin.name)
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

    def check_core_intact(self, label: str, moment: str) -> None:
        """Refuse to go on when plugin code replaced part of the harness, or of torch's optimizers,
        schedules or losses, since the plugins were loaded: ``label`` names the component whose
        code ran (``model 'x' (plugin 'p')``) and ``moment`` when (``during build``)."""
        changed_at_import = {key for plugin in self.plugins for key in plugin.changed_core}
        now = _core_snapshot()
        changed = sorted(key for key, value in self._core.items()
                         if now.get(key, value) != value and key not in changed_at_import)
        if changed:
            shown = ", ".join(changed[:3]) + (", …" if len(changed) > 3 else "")
            raise PluginError(
                f"{label} replaced {shown} {moment}; plugin code may not change the harness or torch's optimizers, "
                "schedules or losses: a different optimizer, schedule or EMA is a recipe (see CONTRIBUTING.md)"
            )

    def provenance(self) -> list[PluginRecord]:
        """Every plugin loaded, with its source and code hash, then every module plugin code
        imported from beside itself (``imported_modules``): what a result records."""
        return [plugin.provenance() for plugin in self.plugins if not plugin.error] + self.imported_modules()

    def imported_modules(self) -> list[PluginRecord]:
        """Modules imported since this registry began (plugin import, ``build``, training)
        from neither the standard library, an installed distribution nor a plugin's own file
        or package: code a result depends on that no plugin record covers, such as a module a
        file plugin imports from its own folder. Each is recorded with source ``imported``,
        its file and its sha256, so that ``submit`` can refuse what a bundle cannot carry."""
        plugin_paths = [Path(p.path).parent if Path(p.path).name == "__init__.py" else Path(p.path)
                        for p in self.plugins if p.source in ("file", "directory", "module") and p.path]
        skipped = tuple(f"{root}{os.sep}" for root in plugin_paths + _installed_roots())
        found = []
        for name, module in sorted(sys.modules.items()):
            file = getattr(module, "__file__", None)
            if name in self._modules_before or not isinstance(file, str) or file.startswith(skipped):
                continue
            path = Path(file).resolve()
            if not path.is_file() or path in plugin_paths or str(path).startswith(skipped):
                continue
            found.append((name, path))
        if found:
            installed = metadata.packages_distributions()
            found = [(name, path) for name, path in found if name.split(".")[0] not in installed]
        return [PluginRecord(name=name, source="imported", path=str(path), sha256=sha256_of(path)) for name, path in found]

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
                raise UserError(f"{kind} {base!r} takes no variant; use {KINDS[kind].option or kind} {base}")
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
        disabled = [p.name for p in self.plugins if p.disabled]
        if disabled:
            message += f" (switched off: {', '.join(disabled)})"
        message += " — `bench plugins` lists every component"
        raise UserError(message)


@functools.cache
def _installed_roots() -> list[Path]:
    """The folders of the standard library, of installed distributions and of this harness."""
    paths = sysconfig.get_paths()
    roots = {paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots.update(site.getsitepackages() + [site.getusersitepackages()])
    harness_folder = Path(hookspecs.__file__).parent
    roots.update((str(harness_folder), str(harness_folder.parent / "plugins")))
    return sorted({Path(root).resolve() for root in roots} | {Path(root).absolute() for root in roots})


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
