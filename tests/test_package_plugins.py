"""Package-folder plugins laid out like vendored upstream code: trained, submitted with every
``.py`` and license file stored by sha256, reproduced bit for bit from the bundle; path
segments a stranger could abuse (links, dot-names) refused in one line."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import TINY_PLUGIN

from harness.cli import main
from harness.errors import UserError, cut
from harness.leaderboard.store import copy_code
from harness.naming import code_sha256, package_files, package_part
from harness.registry import Registry

# What a method author vendors: upstream's package (a sub-package, relative imports, its
# LICENSE) beside a few lines of glue that register it.
PACKAGE = {
    "__init__.py": "from .glue import register_models\n",
    "glue.py": '''
from harness import ModelSpec, hookimpl

from .upstream import build_net


@hookimpl
def register_models(register):
    register(ModelSpec(name="vendored-net", build=build_net, version="1", head_prefixes=("head",)))
''',
    "LICENSE": "MIT License\n\nCopyright (c) upstream authors\n",
    "README.md": "not code: neither hashed nor stored\n",
    "upstream/__init__.py": "from .net import build_net\n",
    "upstream/_layers.py": '''
import torch.nn as nn


def stem(width):
    return nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1), nn.ReLU())
''',
    "upstream/net.py": '''
import torch.nn as nn

from . import _layers
from ..glue import hookimpl  # a relative import reaching the package root


def build_net(num_classes, pretrained):
    assert hookimpl is not None
    model = nn.Sequential()
    model.add_module("features", nn.Sequential(_layers.stem(8), nn.AdaptiveAvgPool2d(1), nn.Flatten()))
    model.add_module("head", nn.Linear(8, num_classes))
    return model
''',
    "upstream/LICENSE.upstream": "Apache License 2.0 (the sub-package's own)\n",
}


def make_package(folder: Path) -> Path:
    for relative, text in PACKAGE.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text(text)
    return folder


def bench(*args):
    return CliRunner().invoke(main, [*map(str, args)])


def stored_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


CODE = ["LICENSE", "__init__.py", "glue.py", "upstream/LICENSE.upstream", "upstream/__init__.py",
        "upstream/_layers.py", "upstream/net.py"]


def test_package_code_is_its_py_and_license_files_hashed_by_path_and_bytes(tmp_path):
    package = make_package(tmp_path / "vendored")
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "glue.cpython-312.pyc").write_bytes(b"\0")
    assert [p.relative_to(package).as_posix() for p in package_files(package)] == CODE
    digest = hashlib.sha256()
    for relative in CODE:
        digest.update(relative.encode() + b"\0" + (package / relative).read_bytes() + b"\0")
    assert code_sha256(package) == digest.hexdigest()
    before = code_sha256(package)
    (package / "LICENSE").write_text("GPL\n")  # a license is part of what is submitted
    assert code_sha256(package) != before
    (package / "README.md").write_text("edited\n")
    assert code_sha256(package) == code_sha256(package)


@pytest.mark.parametrize("name", ["__init__.py", "_private.py", "LICENSE", "a.b-c_d.py"])
def test_private_and_dunder_names_are_plain_segments(name):
    assert package_part(name, "file") == name


@pytest.mark.parametrize("name", ["..", ".hidden.py", "a/b.py", "a\\b.py", "", "/etc"])
def test_dot_and_separator_segments_are_refused(name):
    with pytest.raises(UserError, match="is not a plain file or folder name"):
        package_part(name, "file")


def test_links_in_a_package_are_refused_in_one_line_and_the_plugin_fails_to_load(tmp_path):
    package = make_package(tmp_path / "vendored")
    secret = tmp_path / "secret.py"
    secret.write_text("KEY = 1\n")
    os.symlink(secret, package / "upstream" / "stolen.py")
    message = (f"{package / 'upstream' / 'stolen.py'}: a symbolic link in a plugin package, which holds regular files "
               "and folders only: replace the link with what it points to")
    with pytest.raises(UserError) as error:
        package_files(package)
    assert str(error.value) == message
    with pytest.raises(UserError):
        copy_code(package, tmp_path / "copy", "directory")
    assert not (tmp_path / "copy").exists()
    result = bench("run", "--plugin", package, "--dataset", "shapes", "--model", "vendored-net", "--epochs", "1")
    assert result.output == f"Error: {cut(f'plugin {str(package)!r} failed to load: {message}')}\n"
    (package / "upstream" / "stolen.py").unlink()
    os.symlink(tmp_path, package / "linked_folder")  # a link to a folder, too
    with pytest.raises(UserError, match="linked_folder: a symbolic link"):
        package_files(package)


def test_an_odd_name_on_the_way_to_a_code_file_is_refused(tmp_path):
    package = make_package(tmp_path / "vendored")
    (package / "sub dir").mkdir()
    (package / "sub dir" / "x.py").write_text("")
    with pytest.raises(UserError, match=r"plugin package .*vendored: file 'sub dir' is not a plain file or folder name"):
        package_files(package)


@pytest.mark.slow
def test_a_vendored_package_trains_submits_and_reproduces_from_the_bundle(tmp_path, tiny_root):
    package = make_package(tmp_path / "vendored")
    runs, root = tmp_path / "runs", tmp_path / "lb"
    result = bench("run", "--plugin", TINY_PLUGIN, "--plugin", f"{package}/", "--dataset", "tiny", "--data-root",
                   tiny_root, "--model", "vendored-net", "--protocol", "smoke", "--size", "32", "--epochs", 1,
                   "--device", "cpu", "--out", runs, "--quiet")
    assert result.exit_code == 0, result.output
    run = runs / "tiny-vendored-net-flip-32-smoke-seed0"
    record = json.loads((run / "result.json").read_text())
    assert record["model"]["plugin"]["source"] == "directory"
    assert record["model"]["plugin"]["sha256"] == code_sha256(package)
    assert record["model"]["plugin"]["path"] == str(package.resolve())
    assert [p["source"] for p in record["plugins"] if p["source"] == "imported"] == []  # its own modules are its code

    result = bench("leaderboard", "submit", run, "--leaderboards", root, "--plugin", TINY_PLUGIN)
    assert result.exit_code == 0, result.output
    stored = root / "submissions" / "plugins" / code_sha256(package)
    assert stored_files(stored) == CODE
    assert all((stored / r).read_bytes() == (package / r).read_bytes() for r in CODE)

    (package / "upstream" / "net.py").write_text("raise ImportError('the original is gone')\n")
    (bundle,) = (root / "submissions" / "tiny" / "smoke").glob("*.json")
    from test_leaderboard_tables import maintainer_key

    result = bench("leaderboard", "reproduce", bundle, "--leaderboards", root,
                   "--data-root", tiny_root, "--sign", maintainer_key(root), "--quiet")
    assert result.exit_code == 0, result.output
    assert "verified (exact)" in result.output


SIBLING_PLUGIN = '''
import os
import sys

from harness import ModelSpec, hookimpl

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # glue that imports from beside itself


def build(num_classes, pretrained):
    import sibling_net_for_test  # imported during build, not at import

    return sibling_net_for_test.build(num_classes)


@hookimpl
def register_models(register):
    register(ModelSpec(name="sibling-net", build=build, version="1", head_prefixes=("head",)))
'''
SIBLING = '''
import torch.nn as nn


def build(num_classes):
    model = nn.Sequential()
    model.add_module("features", nn.Sequential(nn.Conv2d(3, 4, 3, stride=4), nn.AdaptiveAvgPool2d(1), nn.Flatten()))
    model.add_module("head", nn.Linear(4, num_classes))
    return model
'''


@pytest.mark.slow
def test_a_module_imported_from_beside_a_file_plugin_is_recorded_and_submit_refuses_it(tmp_path, tiny_root,
                                                                                       monkeypatch):
    folder = tmp_path / "glue"
    folder.mkdir()
    (folder / "sibling_plugin.py").write_text(SIBLING_PLUGIN)
    sibling = folder / "sibling_net_for_test.py"
    sibling.write_text(SIBLING)
    monkeypatch.setattr(sys, "path", list(sys.path))
    try:
        result = bench("run", "--plugin", TINY_PLUGIN, "--plugin", folder / "sibling_plugin.py", "--dataset", "tiny",
                       "--data-root", tiny_root, "--model", "sibling-net", "--protocol", "smoke", "--size", "32",
                       "--epochs", 1, "--device", "cpu", "--out", tmp_path / "runs", "--quiet")
    finally:
        sys.modules.pop("sibling_net_for_test", None)
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "tiny-sibling-net-flip-32-smoke-seed0"
    plugins = json.loads((run / "result.json").read_text())["plugins"]
    imported = [p for p in plugins if p["source"] == "imported"]
    assert imported == [{"name": "sibling_net_for_test", "source": "imported", "distribution": None,
                         "distribution_version": None, "path": str(sibling.resolve()),
                         "sha256": hashlib.sha256(SIBLING.encode()).hexdigest()}]
    message = (f"{run / 'result.json'}: plugin code imported module 'sibling_net_for_test' ({sibling.resolve()}), "
               "which is in no plugin file, package folder or installed distribution, so a submission cannot carry "
               "it: move it into a package-folder plugin (CONTRIBUTING.md) and train again")
    result = bench("leaderboard", "submit", run, "--leaderboards", tmp_path / "lb", "--plugin", TINY_PLUGIN)
    assert result.exit_code == 1 and result.output == f"Error: {cut(message)}\n"
    assert not (tmp_path / "lb" / "submissions" / "tiny").exists()


def test_a_module_plugin_s_own_package_is_not_an_imported_module(tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "bench_module_pkg_for_test").mkdir(parents=True)
    (site / "bench_module_pkg_for_test" / "__init__.py").write_text("from . import helpers\n")
    (site / "bench_module_pkg_for_test" / "helpers.py").write_text("")
    (site / "beside_for_test.py").write_text("")
    monkeypatch.syspath_prepend(str(site))
    try:
        registry = Registry(("bench_module_pkg_for_test",))
        assert [p for p in registry.imported_modules()] == []
        import beside_for_test  # noqa: F401  (imported after the registry began, from no plugin)

        assert [(p.name, p.source, p.sha256) for p in registry.imported_modules()] == [
            ("beside_for_test", "imported", hashlib.sha256(b"").hexdigest())]
    finally:
        for name in ("bench_module_pkg_for_test", "bench_module_pkg_for_test.helpers", "beside_for_test"):
            sys.modules.pop(name, None)
