"""Loading plugins every way a user can, and the provenance each way records."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import TINY_PLUGIN

from harness.cli import main
from harness.errors import UserError
from harness.registry import Registry

FUSION_PLUGIN = """
from harness import FusionSpec, hookimpl


@hookimpl
def register_fusions(register):
    register(FusionSpec(name="{name}", version="3", fuse=lambda arrays: sum(arrays) / len(arrays)))
"""

MODEL_PLUGIN = """
from harness import ModelSpec, hookimpl
from tiny_plugin import build_tiny_cnn


@hookimpl
def register_models(register):
    register(ModelSpec(name="{name}", version="2", build=build_tiny_cnn, head_prefixes=("head",)))
"""


def bench(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def write(path: Path, source: str, **names) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source.format(**names)))
    return path


def plugin_named(registry: Registry, name: str):
    (plugin,) = [p for p in registry.plugins if p.name == name]
    return plugin


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A folder on sys.path; modules imported from it are forgotten after the test."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    yield folder
    for path in folder.glob("*.py"):
        sys.modules.pop(path.stem, None)


@pytest.fixture
def install(site):
    """Install a one-module distribution into ``site`` as pip leaves it: the module and a dist-info."""

    def install(distribution: str, version: str, entry_point: str, module: str, source: str, **names) -> None:
        write(site / f"{module}.py", source, **names)
        info = site / f"{distribution.replace('-', '_')}-{version}.dist-info"
        write(info / "METADATA", f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n")
        write(info / "entry_points.txt", f"[multilabel_bench]\n{entry_point} = {module}\n")
        importlib.invalidate_caches()

    return install


def test_file_plugin_records_its_path_and_sha256(tmp_path):
    path = write(tmp_path / "my_fusion.py", FUSION_PLUGIN, name="from-file")
    component = Registry([str(path)]).get("fusion", "from-file")
    assert dataclasses.asdict(component.provenance()) == {
        "name": "from-file",
        "version": "3",
        "plugin": {
            "name": str(path),
            "source": "file",
            "distribution": None,
            "distribution_version": None,
            "path": str(path.resolve()),
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        },
        "params": {},
        "upstream": None,
    }


def test_package_directory_plugin_with_a_submodule(tmp_path):
    package = tmp_path / "fusion_package"
    write(package / "__init__.py", "from .fusions import register_fusions\n")
    write(package / "fusions.py", FUSION_PLUGIN, name="from-package")
    plugin = plugin_named(Registry([str(package)]), str(package))
    assert (plugin.source, plugin.path, plugin.status) == ("directory", str(package.resolve()), "ok")
    assert [c.name for c in plugin.components] == ["from-package"]
    before = plugin.sha256
    write(package / "fusions.py", FUSION_PLUGIN, name="renamed")
    assert plugin_named(Registry([str(package)]), str(package)).sha256 != before  # a submodule counts


def test_importable_module_plugin(site):
    path = write(site / "bench_test_module_plugin.py", FUSION_PLUGIN, name="from-module")
    plugin = plugin_named(Registry(["bench_test_module_plugin"]), "bench_test_module_plugin")
    assert (plugin.source, plugin.path) == ("module", str(path))
    assert plugin.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert [c.name for c in plugin.components] == ["from-module"]


def test_entry_point_plugin_records_distribution_and_version(install):
    install("multilabel-bench-fake", "1.2.3", "fake", "bench_test_fake_plugin", FUSION_PLUGIN, name="fake-mean")
    result = bench("plugins", "--json")
    (record,) = [r for r in json.loads(result.stdout) if r["name"] == "fake"]
    module = Path(importlib.import_module("bench_test_fake_plugin").__file__)
    assert record == {
        "name": "fake",
        "source": "distribution",
        "distribution": "multilabel-bench-fake",
        "distribution_version": "1.2.3",
        "sha256": hashlib.sha256(module.read_bytes()).hexdigest(),
        "status": "ok",
        "components": [{"kind": "fusion", "name": "fake-mean", "version": "3"}],
    }


def test_check_by_entry_point_name_checks_only_that_plugin(install):
    install("multilabel-bench-fake", "1.2.3", "fake", "bench_test_fake_plugin", FUSION_PLUGIN, name="fake-mean")
    result = bench("check", "--plugin", "fake", "--json")
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert {(r["kind"], r["component"], r["plugin"]) for r in records} == {("fusion", "fake-mean", "fake")}
    assert [r["status"] for r in records] == ["pass"] * 4


def test_builtin_named_by_entry_point_name_is_the_requested_plugin():
    registry = Registry(["augmentations"])
    assert [p.name for p in registry.plugins if p.requested] == ["plugins.augmentations"]


def test_one_module_named_several_ways_is_one_plugin(tmp_path):
    module_file = Path(importlib.import_module("plugins.augmentations").__file__)
    registry = Registry(["augmentations", "plugins.augmentations", str(module_file)])
    assert not registry.failed()
    assert [p.name for p in registry.plugins if p.requested] == ["plugins.augmentations"]
    names = [c.name for c in registry.components("augmentation")]
    assert len(names) == len(set(names))
    path = write(tmp_path / "twice.py", FUSION_PLUGIN, name="given-twice")
    registry = Registry([str(path), str(path)])
    assert [c.name for c in registry.components("fusion") if c.plugin.name == str(path)] == ["given-twice"]


def test_unknown_plugin_value_suggests_entry_point_names():
    listed = bench("plugins", "--plugin", "modls")
    assert listed.exit_code == 0
    assert "did you mean models?" in listed.stdout
    checked = bench("check", "--plugin", "modls")
    assert checked.exit_code == 1
    assert checked.stderr == (
        "Error: plugin 'modls' failed to load: no such plugin file, package directory, module or "
        "entry point: 'modls'; did you mean models?\n"
    )


def test_unknown_component_suggests_the_closest_names(tmp_path):
    path = write(tmp_path / "model_plugin.py", MODEL_PLUGIN, name="attention-net")
    result = bench("run", "--plugin", path, "--model", "atention-net", "--device", "cpu", "--out", tmp_path)
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: unknown model 'atention-net'; did you mean attention-net?")
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_run_records_the_distribution_of_an_installed_model(install, tiny_root, tmp_path):
    install("multilabel-bench-tinyattn", "0.4.0", "tinyattn", "bench_test_tinyattn", MODEL_PLUGIN, name="tiny-attn")
    result = bench(
        "run", "--plugin", TINY_PLUGIN, "--dataset", "tiny", "--data-root", tiny_root, "--model", "tiny-attn",
        "--size", "32", "--epochs", "1", "--device", "cpu", "--out", tmp_path, "--run-id", "r", "--quiet",
    )
    assert result.exit_code == 0, result.output
    model = json.loads((tmp_path / "r" / "result.json").read_text())["model"]
    assert (model["name"], model["version"]) == ("tiny-attn", "2")
    module = Path(importlib.import_module("bench_test_tinyattn").__file__)
    assert model["plugin"] == {
        "name": "tinyattn",
        "source": "distribution",
        "distribution": "multilabel-bench-tinyattn",
        "distribution_version": "0.4.0",
        "path": None,
        "sha256": hashlib.sha256(module.read_bytes()).hexdigest(),
    }
    plugins = json.loads((tmp_path / "r" / "result.json").read_text())["plugins"]
    assert model["plugin"] in plugins and {p["name"] for p in plugins} >= {"tinyattn", TINY_PLUGIN, "plugins.models"}


def test_installed_plugins_switch_off_by_name_or_for_all(install, monkeypatch):
    install("multilabel-bench-fake", "1.2.3", "fake", "bench_test_fake_plugin", FUSION_PLUGIN, name="fake-mean")

    def status(*args: str) -> dict[str, str]:
        return {r["name"]: r["status"] for r in json.loads(bench("plugins", "--json", *args).stdout)}

    assert status()["fake"] == "ok"
    assert status("--no-plugin", "fake")["fake"] == "disabled"
    assert status("--no-plugin", "multilabel-bench-fake")["fake"] == "disabled"  # the distribution's name
    assert status("--no-plugin", "plugins.models")["plugins.models"] == "ok"  # built-ins stay
    registry = Registry(disabled=["fake"])
    with pytest.raises(UserError, match="fake-mean"):
        registry.get("fusion", "fake-mean")
    monkeypatch.setenv("BENCH_DISABLE_PLUGIN_AUTOLOAD", "1")
    everything = status()
    assert everything["fake"] == "disabled" and everything["plugins.fusions"] == "ok"
    assert status("--plugin", "fake")["fake"] == "ok"  # named: loaded all the same
    assert [c.name for c in Registry(["fake"]).get("fusion", "fake-mean").plugin.components] == ["fake-mean"]


DESCRIBED_PLUGIN = """
from harness import FusionSpec, hookimpl


@hookimpl
def register_fusions(register):
    register(FusionSpec(name="described-mean", version="1", fuse=lambda arrays: sum(arrays) / len(arrays),
                        description="the mean of the runs' logits"))
    register(FusionSpec(name="plain-mean", version="1", fuse=lambda arrays: sum(arrays) / len(arrays)))
"""


def test_a_spec_description_shows_in_bench_plugins_and_bench_check(tmp_path):
    path = tmp_path / "described.py"
    path.write_text(DESCRIBED_PLUGIN)
    (record,) = json.loads(bench("plugins", "--plugin", str(path), "--json").stdout)[-1:]
    assert record["components"] == [
        {"kind": "fusion", "name": "described-mean", "version": "1", "description": "the mean of the runs' logits"},
        {"kind": "fusion", "name": "plain-mean", "version": "1"},
    ]
    lines = bench("check", "--plugin", str(path)).stdout.splitlines()
    assert f"fusion described-mean (plugin {path}): the mean of the runs' logits" in lines
    assert f"fusion plain-mean (plugin {path})" in lines
