"""The declared dependencies are honest: every runtime dependency is imported by the package,
and the package imports no third-party module it does not declare."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
IMPORT_NAMES = {"pillow": "PIL", "scikit-learn": "sklearn", "mlflow-skinny": "mlflow"}  # distributions whose module is named otherwise
OWN = {"harness", "plugins"}


def declared(group: str | None = None) -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] if group is None else project["optional-dependencies"][group]
    names = set()
    for requirement in requirements:
        if "python_version < '3.11'" in requirement:
            continue  # tomli, the backport of tomllib
        names.add(re.match(r"[A-Za-z0-9_.-]+", requirement).group(0).lower())
    return names


def imported_modules(folders: tuple[str, ...]) -> set[str]:
    """Top-level modules imported anywhere in the package's source (function-level imports included)."""
    found = set()
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    found |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    found.add(node.module.split(".")[0])
    return found


def test_every_runtime_dependency_is_imported_by_the_package():
    modules = imported_modules(("harness", "plugins"))
    unused = sorted(name for name in declared() if IMPORT_NAMES.get(name, name).replace("-", "_") not in modules)
    assert unused == []


def optional_groups() -> list[str]:
    """The extras that add features (loggers, launchers); ``test`` is for the test suite only."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return sorted(set(project["optional-dependencies"]) - {"test"})


def test_the_package_imports_only_what_it_declares():
    modules = imported_modules(("harness", "plugins")) - OWN - set(sys.stdlib_module_names) - {"tomli"}
    names = declared().union(*(declared(group) for group in optional_groups()))
    allowed = {IMPORT_NAMES.get(name, name).replace("-", "_") for name in names}
    assert sorted(modules - allowed) == []


def test_test_only_libraries_stay_in_the_test_extra():
    assert "scikit-learn" not in declared() and "scikit-learn" in declared("test")
    assert "sklearn" not in imported_modules(("harness", "plugins"))
