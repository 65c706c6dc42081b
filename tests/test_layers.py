"""The import layers: cli → core → utilities, and plugins → the plugin API only.

Every ``import`` and ``from … import`` of every module (functions' own imports included) is
read with ``ast``; a module that imports across a layer the wrong way fails this test with
the file, line and import named.
"""

from __future__ import annotations

import ast
from pathlib import Path

import harness

ROOT = Path(__file__).resolve().parents[1]
# Modules of the core that import no other part of it but each other.
UTILITIES = {"harness.errors", "harness.naming", "harness.progress", "harness.distributed", "harness.hookspecs",
             "harness.machine", "harness.typed_json", "harness.files", "harness.contracts"}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, root: Path) -> list[tuple[int, str]]:
    """``(line, module)`` for every import of ``path``; ``from harness import x`` counts as
    ``harness.x`` where ``x`` is a module of the package, else as ``harness``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            base = root.joinpath(*node.module.split("."))
            for alias in node.names:
                is_module = (base / f"{alias.name}.py").is_file() or (base / alias.name / "__init__.py").is_file()
                found.append((node.lineno, f"{node.module}.{alias.name}" if is_module else node.module))
    return found


def layer_violations(folder: str, allowed, root: Path = ROOT) -> list[str]:
    problems = []
    for path in sorted((root / folder).rglob("*.py")):
        if "tests" in path.relative_to(root).parts:
            continue  # a plugin's own tests drive the harness from outside
        source = module_name(path, root)
        for line, target in imports(path, root):
            if target.split(".")[0] in ("harness", "plugins") and not allowed(source, target):
                problems.append(f"{path.relative_to(root)}:{line} imports {target}")
    return problems


def test_the_core_never_imports_the_command_line_or_the_built_in_plugins():
    def allowed(source: str, target: str) -> bool:
        if source.startswith("harness.cli") or source == "harness.__main__":
            return not target.startswith("plugins")
        return not target.startswith(("harness.cli", "plugins"))

    assert layer_violations("harness", allowed) == []


def test_utilities_import_only_utilities():
    def allowed(source: str, target: str) -> bool:
        return source not in UTILITIES or target in UTILITIES

    assert layer_violations("harness", allowed) == []


def test_plugins_import_only_the_plugin_api():
    def allowed(source: str, target: str) -> bool:
        return target == "harness" or target in harness.PLUGIN_API_MODULES or target.startswith("plugins")

    assert layer_violations("plugins", allowed) == []
    assert layer_violations("examples", allowed) == []


def test_the_checker_sees_a_wrong_import(tmp_path):
    (tmp_path / "harness" / "cli").mkdir(parents=True)
    (tmp_path / "harness" / "cli" / "run.py").write_text("")
    (tmp_path / "harness" / "sweep.py").write_text("import os\n\n\ndef f():\n    from harness.cli import run\n")
    assert layer_violations("harness", lambda s, t: not t.startswith("harness.cli"), tmp_path) == [
        "harness/sweep.py:5 imports harness.cli.run"]


def test_the_plugin_api_names_are_exported():
    for name in ("UserError", "assemble", "Files", "DatasetProblem", "leaves_folder", "load_state_dict",
                 "create_model", "load_dataset"):
        assert name in harness.__all__ and getattr(harness, name) is not None
