"""The public Python API, as the README shows it: the example runs exactly as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_public_names_are_importable_from_harness():
    import harness

    for name in ("run", "evaluate", "fuse", "compare", "hookimpl", "RunConfig", "RunRecord", "ModelSpec", "LossSpec",
                 "DatasetInfo", "DatasetSpec", "AugmentationSpec", "FusionSpec", "Dataset", "Split"):
        assert callable(getattr(harness, name)), name
    from harness import compare, fuse, run

    assert (run.__module__, fuse.__module__, compare.__module__) == ("harness.runner", "harness.fusion", "harness.comparison")


@pytest.mark.slow
def test_the_readme_example_runs(tmp_path, monkeypatch, capsys):
    example = re.search(r"The Python API mirrors the CLI.*?```python\n(.*?)```", README.read_text(), re.DOTALL).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(example, "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 2 and str(tmp_path / "runs" / "api") in printed[0]
    runs = sorted(p.name for p in (tmp_path / "runs" / "api").iterdir() if not p.name.startswith("."))
    assert runs == ["shapes-smallcnn-flip-32-smoke-seed0", "shapes-smallcnn-flip-32-smoke-seed0+1-SeedEn",
                    "shapes-smallcnn-flip-32-smoke-seed1"]


def test_create_model_and_load_dataset_as_a_run_makes_them(tiny_root):
    import torch
    from conftest import TINY_PLUGIN
    from tiny_plugin import load_tiny

    from harness import UserError, create_model, load_dataset

    dataset = load_dataset("tiny", tiny_root, plugins=[TINY_PLUGIN])
    expected = load_tiny(tiny_root, {})
    assert dataset.classes == expected.classes
    assert (dataset.splits["test"].labels == expected.splits["test"].labels).all()
    model = create_model("tiny-cnn", len(dataset.classes), plugins=[TINY_PLUGIN])
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, len(dataset.classes))
    with pytest.raises(UserError, match="tiny-cnn-features.pth not found"):
        create_model("tiny-cnn", 10, pretrained="imagenet", plugins=[TINY_PLUGIN])
