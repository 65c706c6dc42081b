"""CONTRIBUTING.md documents every hook, every spec and each spec's fields, and its example plugin works."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pluggy
from click.testing import CliRunner

from harness import hookspecs, specs
from harness.cli import main

GUIDE = Path(__file__).resolve().parents[1] / "CONTRIBUTING.md"


def hook_names() -> list[str]:
    """Every function in harness/hookspecs.py marked as a hook specification."""
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    return sorted(name for name in vars(hookspecs) if manager.parse_hookspec_opts(hookspecs, name))


def spec_classes() -> list[type]:
    """Every dataclass defined in harness/specs.py."""
    return [c for c in vars(specs).values() if dataclasses.is_dataclass(c) and c.__module__ == specs.__name__]


def sections(text: str) -> dict[str, str]:
    """Headings written as a single `name` in backticks, each with the text up to the next heading."""
    headings = list(re.finditer(r"^#+ (.*)$", text, re.MULTILINE))
    ends = [h.start() for h in headings[1:]] + [len(text)]
    return {h.group(1).strip("` "): text[h.end():end] for h, end in zip(headings, ends) if re.fullmatch(r"`\w+`", h.group(1))}


def undocumented(text: str) -> list[str]:
    """Hooks, specs and spec fields the guide lacks: a heading per hook and spec, each field in its section."""
    found = sections(text)
    missing = [f"hook {name}" for name in hook_names() if name not in found]
    for cls in spec_classes():
        if cls.__name__ not in found:
            missing.append(f"spec {cls.__name__}")
            continue
        body = found[cls.__name__]
        missing += [f"{cls.__name__}.{f.name}" for f in dataclasses.fields(cls) if f"`{f.name}`" not in body]
    return missing


def test_the_api_is_what_the_guide_is_checked_against():
    assert hook_names() == ["register_augmentations", "register_datasets", "register_fusions", "register_loggers",
                            "register_losses", "register_models", "register_recipes"]
    names = {c.__name__ for c in spec_classes()}
    assert names >= {"DatasetSpec", "Dataset", "DatasetInfo", "Split", "ModelSpec", "AugmentationSpec", "LossSpec",
                     "FusionSpec"}


def test_guide_documents_every_hook_spec_and_field():
    assert undocumented(GUIDE.read_text()) == []


def test_a_missing_section_or_field_is_reported():
    text = GUIDE.read_text()
    without_hook = text.replace("#### `register_fusions`", "#### Fusions")
    assert undocumented(without_hook) == ["hook register_fusions"]
    model_section = sections(text)["ModelSpec"]
    without_field = text.replace(model_section, model_section.replace("`takes_variant`", "takes_variant"))
    assert undocumented(without_field) == ["ModelSpec.takes_variant"]


def test_the_minimal_plugin_passes_bench_check(tmp_path):
    after_heading = GUIDE.read_text().split("### A minimal plugin", 1)[1]
    code = re.search(r"```python\n(.*?)```", after_heading, re.DOTALL).group(1)
    path = tmp_path / "my_plugin.py"
    path.write_text(code)
    result = CliRunner().invoke(main, ["check", "--plugin", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "10 passed, 0 failed, 0 skipped"
