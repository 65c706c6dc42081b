"""Which plugin code ``bench run --resume`` may import: only what the user names again.

A run folder may come from anyone, and ``run.json`` names the plugins the run loaded. Were
``--resume`` to import them from there, a planted ``run.json`` could run any ``.py`` file on
the machine, or one inside the run folder itself. So a file, folder or module plugin is
imported on resume only when the user passes it again with ``--plugin``, and a file or
folder must still have the sha256 ``run.json`` records; installed plugin distributions are
loaded from their entry points when they are at the recorded version
(``runner.check_distribution_versions``), built-in plugins as always. Each refusal is one line.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from harness.config import PluginSource, ResolvedRun
from harness.errors import UserError
from harness.naming import code_sha256

NAMED_AGAIN = ("file", "directory", "module")


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _given(value: str) -> tuple[str, str | None, str | None]:
    """A ``--plugin`` value as ``(value, kind, sha256)``: a file or folder by its resolved path
    and code hash, anything else as a module name."""
    path = Path(value).expanduser()
    if path.exists():
        path = path.resolve()
        return str(path), "file" if path.is_file() else "directory", code_sha256(path)
    return value, "module", None


def plugins_named_again(resolved: ResolvedRun, run_dir: Path, plugins: tuple[str, ...] | list[str]) -> ResolvedRun:
    """``resolved`` with its file, folder and module plugins taken from ``plugins`` (the user's
    ``--plugin`` values), each matched to the one ``run.json`` records by kind and sha256 (a
    module by name); refused in one line when ``run.json`` names a plugin inside ``run_dir``,
    one not passed, or when a passed one is not a plugin of the run."""
    run_dir = Path(run_dir).resolve()
    where = run_dir / "run.json"
    given = [_given(value) for value in plugins]
    used: set[int] = set()
    sources = []
    for index, source in enumerate(resolved.plugins):
        kind = source.plugin.source
        if kind not in NAMED_AGAIN:
            used.update(i for i, g in enumerate(given) if g[0] == source.value)  # a distribution named again
            sources.append(source)
            continue
        if kind != "module" and _inside(Path(source.value).expanduser().resolve(), run_dir):
            raise UserError(f"{where}: plugins[{index}] is {source.value!r}, inside the run folder; resume never imports "
                            "code from a run folder: start the run again with the plugin kept elsewhere")
        match = next((i for i, (value, found, sha256) in enumerate(given) if i not in used and found == kind and (
            value == source.value if kind == "module" else sha256 == source.plugin.sha256)), None)
        if match is None:
            same_path = next((g for g in given if g[1] != "module" and g[0] == str(Path(source.value).resolve())), None)
            if same_path is not None:
                raise UserError(f"plugin {same_path[0]} has sha256 {str(same_path[2])[:12]}…, but the run was started "
                                f"with sha256 {str(source.plugin.sha256)[:12]}…; restore that file (the run must finish "
                                "with the code it started with) or start a new run")
            raise UserError(f"{where}: plugins[{index}] is {kind} {source.value!r}; resume imports a plugin only when you "
                            f"name it again: add --plugin {source.value}")
        used.add(match)
        value = given[match][0]
        plugin = source.plugin if kind == "module" else dataclasses.replace(source.plugin, path=value)
        sources.append(PluginSource(value=value, plugin=plugin))
    extra = next((plugins[i] for i in range(len(given)) if i not in used), None)
    if extra is not None:
        raise UserError(f"--plugin {extra}: not a plugin of the run in {run_dir} (its run.json names "
                        f"{', '.join(s.value for s in resolved.plugins if s.plugin.source in NAMED_AGAIN) or 'none'}); "
                        "resume continues a run with the plugins it started with: drop it")
    return dataclasses.replace(resolved, plugins=sources)
