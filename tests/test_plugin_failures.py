"""A broken plugin costs one line naming it and its problem, and nothing else stops working."""

from __future__ import annotations

import importlib
import json
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import TINY_PLUGIN

from harness.cli import main

MISSING_DEPENDENCY = """
import not_installed_dependency_xyz
"""

TWIN = """
from harness import ModelSpec, hookimpl
from tiny_plugin import build_tiny_cnn


@hookimpl
def register_models(register):
    register(ModelSpec(name="twin", build=build_tiny_cnn, head_prefixes=("head",)))
"""

MISBEHAVING_MODELS = """
import torch

from harness import ModelSpec, hookimpl
from tiny_plugin import build_tiny_cnn


def exploding(num_classes, pretrained):
    raise RuntimeError("layer4 has no attribute 'conv9'")


def one_column_too_many(num_classes, pretrained):
    return build_tiny_cnn(num_classes + 1, pretrained)


@hookimpl
def register_models(register):
    register(ModelSpec(name="exploding", build=exploding, head_prefixes=("head",)))
    register(ModelSpec(name="too-wide", build=one_column_too_many, head_prefixes=("head",)))
"""

RAISING_HOOK = """
from harness import hookimpl


@hookimpl
def register_models(register):
    raise ValueError("weights table is empty")
"""

WRONG_SPEC = """
from harness import DatasetSpec, hookimpl


@hookimpl
def register_models(register):
    register(DatasetSpec(name="not-a-model", load=None))
"""


def bench(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def write(path: Path, source: str) -> Path:
    path.write_text(textwrap.dedent(source))
    return path


def tiny_run(tiny_root, out, *extra):
    return bench(
        "run", "--plugin", TINY_PLUGIN, "--dataset", "tiny", "--data-root", tiny_root, "--size", "32",
        "--epochs", "1", "--device", "cpu", "--out", out, "--quiet", *extra,
    )


def one_error_line(result) -> str:
    """The single ``Error:`` line of a failed command; fails the test on a traceback."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("Error:")]
    return line


def test_import_failure_names_the_plugin_and_the_missing_module(tmp_path):
    broken = write(tmp_path / "broken_plugin.py", MISSING_DEPENDENCY)
    problem = "ModuleNotFoundError: No module named 'not_installed_dependency_xyz'"
    listed = bench("plugins", "--plugin", broken, "--json")
    assert listed.exit_code == 0
    (record,) = [r for r in json.loads(listed.stdout) if r["name"] == str(broken)]
    assert (record["status"], record["error"]) == ("failed", problem)
    assert one_error_line(bench("check", "--plugin", broken)) == f"Error: plugin '{broken}' failed to load: {problem}"
    assert one_error_line(bench("run", "--plugin", broken, "--out", tmp_path)) == (
        f"Error: plugin '{broken}' failed to load: {problem}"
    )
    verbose = bench("--verbose", "check", "--plugin", broken)
    assert verbose.exit_code == 1 and "Traceback" in verbose.output


@pytest.fixture
def broken_installed_plugin(tmp_path, monkeypatch):
    """An installed distribution whose module fails to import, as after a half-finished upgrade."""
    site = tmp_path / "site"
    info = site / "multilabel_bench_broken-0.9.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: multilabel-bench-broken\nVersion: 0.9\n")
    (info / "entry_points.txt").write_text("[multilabel_bench]\nbroken = bench_test_broken_plugin\n")
    write(site / "bench_test_broken_plugin.py", MISSING_DEPENDENCY)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    yield "broken"
    sys.modules.pop("bench_test_broken_plugin", None)


def test_a_broken_installed_plugin_leaves_other_commands_working(broken_installed_plugin, tmp_path):
    listed = bench("plugins")
    assert listed.exit_code == 0
    (row,) = [line for line in listed.stdout.splitlines() if line.startswith("broken ")]
    assert "multilabel-bench-broken 0.9" in row
    assert "failed: ModuleNotFoundError: No module named 'not_installed_dependency_xyz'" in row
    shown = bench("protocol", "show", "smoke")
    assert shown.exit_code == 0 and "wang2019 scaled for a CPU" in shown.stdout
    fine = write(tmp_path / "fine.py", TWIN)
    checked = bench("check", "--plugin", fine)
    assert checked.exit_code == 0, checked.output
    unknown = one_error_line(bench("run", "--model", "broken-model", "--out", tmp_path))
    assert unknown.startswith("Error: unknown model 'broken-model'")
    assert "(failed plugins: broken: ModuleNotFoundError: No module named 'not_installed_dependency_xyz')" in unknown


def test_duplicate_names_are_an_error_naming_both_plugins(tmp_path, tiny_root):
    first, second = write(tmp_path / "first.py", TWIN), write(tmp_path / "second.py", TWIN)
    checked = bench("check", "--plugin", first, "--plugin", second, "--json")
    unique = [r for r in json.loads(checked.stdout) if r["check"] == "unique name"]
    assert [(r["plugin"], r["status"]) for r in unique] == [(str(first), "fail"), (str(second), "fail")]
    assert unique[0]["detail"] == f"model 'twin' is also registered by plugin '{second}'; rename one"
    assert one_error_line(checked).startswith("Error: 2 check(s) failed (model twin: unique name;")
    ran = tiny_run(tiny_root, tmp_path, "--plugin", first, "--plugin", second, "--model", "twin")
    assert one_error_line(ran) == (
        f"Error: model 'twin' is registered twice, by plugin '{first}' and plugin '{second}'; uninstall or rename one"
    )


def test_a_build_that_raises(tmp_path, tiny_root):
    plugin = write(tmp_path / "misbehaving.py", MISBEHAVING_MODELS)
    checked = bench("check", "--plugin", plugin, "--component", "exploding")
    assert "  ✗ build(num_classes=7, pretrained=False): raised RuntimeError: layer4 has no attribute 'conv9'" in checked.stdout
    assert one_error_line(checked) == "Error: 1 check(s) failed (model exploding: build(num_classes=7, pretrained=False))"
    ran = tiny_run(tiny_root, tmp_path, "--plugin", plugin, "--model", "exploding", "--pretrained", "none")
    assert one_error_line(ran) == (
        f"Error: model 'exploding' (plugin '{plugin}'): build raised RuntimeError: layer4 has no attribute 'conv9'; "
        "`bench --verbose` shows the traceback"
    )


def test_a_model_with_one_output_column_too_many(tmp_path, tiny_root):
    plugin = write(tmp_path / "misbehaving.py", MISBEHAVING_MODELS)
    checked = bench("check", "--plugin", plugin, "--component", "too-wide")
    assert (
        f"  ✗ output shape (B, C): model 'too-wide' (plugin '{plugin}') returned (2, 8) in eval mode for 2 images "
        "of 64×64 and 7 classes; expected (2, 7) logits" in checked.stdout
    )
    assert one_error_line(checked).startswith("Error: 2 check(s) failed (model too-wide: output shape (B, C);")
    ran = tiny_run(tiny_root, tmp_path, "--plugin", plugin, "--model", "too-wide", "--pretrained", "none")
    assert one_error_line(ran) == (
        f"Error: model 'too-wide' (plugin '{plugin}') returned (2, 11) in eval mode for a batch of 2; expected (2, 10) logits"
    )


@pytest.mark.parametrize(
    "source, problem",
    [
        (RAISING_HOOK, "register_models raised ValueError: weights table is empty"),
        (WRONG_SPEC, "register_models raised PluginError: plugin '{path}' registered a DatasetSpec where a ModelSpec was expected"),
    ],
    ids=["hook-raises", "wrong-spec-type"],
)
def test_a_failing_registration_hook(tmp_path, source, problem):
    path = write(tmp_path / "hooked.py", source)
    problem = problem.format(path=path)
    listed = bench("plugins", "--plugin", path, "--json")
    (record,) = [r for r in json.loads(listed.stdout) if r["name"] == str(path)]
    assert (record["status"], record["error"]) == ("failed", problem)
    assert one_error_line(bench("check", "--plugin", path)) == f"Error: plugin '{path}' failed to load: {problem}"
