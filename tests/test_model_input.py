"""The fused input pass (``pipeline.to_model_input`` with ``flip``, ``mean`` and ``std``) gives
bit for bit the values of the separate steps it replaced, and runs of the built-in
augmentations (flip in the pipeline) train exactly like the same augmentations done on float
batches; a default run imports no timm."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import TINY_PLUGIN

from harness import pipeline
from harness.cli import main
from harness.protocol import IMAGENET_MEAN, IMAGENET_STD
from harness.rundir import read_scores
from plugins.augmentations import augment_flip

MEAN, STD = pipeline.normalization(IMAGENET_MEAN, IMAGENET_STD, torch.device("cpu"))


def separate_steps(images_uint8, flip_generator=None):
    """What the trainer did before the fused pass: float, / 255, contiguous, flip, normalise."""
    images = images_uint8.permute(0, 3, 1, 2).float().div_(255).contiguous()
    if flip_generator is not None:
        images, _ = augment_flip(images, None, 0, flip_generator)
    return (images - MEAN) / STD


def every_value(batch: int = 8, size: int = 16) -> torch.Tensor:
    """uint8 (B, S, S, 3) images holding each of the 256 values in each channel, in shuffled places."""
    values = torch.arange(batch * size * size * 3) % 256
    shuffled = values[torch.randperm(len(values), generator=torch.Generator().manual_seed(0))]
    return shuffled.to(torch.uint8).view(batch, size, size, 3)


def test_fused_pass_equals_the_separate_steps_bit_for_bit():
    images = every_value()
    for channel in range(3):
        assert len(images[..., channel].unique()) == 256
    fused = pipeline.to_model_input(images, torch.device("cpu"), False, mean=MEAN, std=STD)
    assert fused.is_contiguous() and fused.dtype == torch.float32
    assert torch.equal(fused.view(torch.int32), separate_steps(images).view(torch.int32))

    flips = pipeline.random_flips(len(images), torch.Generator().manual_seed(3), torch.device("cpu"))
    assert 0 < int(flips.sum()) < len(images)
    fused = pipeline.to_model_input(images, torch.device("cpu"), False, flip=flips, mean=MEAN, std=STD)
    expected = separate_steps(images, torch.Generator().manual_seed(3))
    assert torch.equal(fused.view(torch.int32), expected.view(torch.int32))


def test_without_mean_and_std_the_pass_gives_zero_to_one_in_the_models_memory_format():
    images = every_value(batch=2, size=4)
    unit = pipeline.to_model_input(images, torch.device("cpu"), True)
    assert unit.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(unit, images.permute(0, 3, 1, 2).float() / 255)
    assert unit[0, 2, 1, 3].item() == np.float32(images[0, 1, 3, 2].item()) / np.float32(255)


UNFUSED = textwrap.dedent('''
    """The built-in augmentations as float-batch functions, without the pipeline's flip."""
    from harness import AugmentationSpec, hookimpl
    from plugins.augmentations import augment_flip, augment_mixup


    @hookimpl
    def register_augmentations(register):
        register(AugmentationSpec("flip-floats", augment_flip, "1"))
        register(AugmentationSpec("mixup-floats", augment_mixup, "1", input_crop="random-resized"))
''')


@pytest.mark.slow
@pytest.mark.parametrize("fused, unfused", [("flip", "flip-floats"), ("mixup", "mixup-floats")])
def test_runs_with_the_pipeline_flip_train_exactly_like_float_flips(tiny_root, tmp_path, fused, unfused):
    plugin = tmp_path / "unfused_augmentations.py"
    plugin.write_text(UNFUSED)
    scores = {}
    for augmentation in (fused, unfused):
        result = CliRunner().invoke(main, [
            "run", "--plugin", TINY_PLUGIN, "--plugin", str(plugin), "--dataset", "tiny", "--data-root", str(tiny_root),
            "--model", "tiny-cnn", "--aug", augmentation, "--protocol", "smoke", "--size", "32", "--epochs", "2",
            "--device", "cpu", "--out", str(tmp_path / "runs"), "--run-id", augmentation, "--quiet"],
            catch_exceptions=False)
        assert result.exit_code == 0, result.output
        scores[augmentation] = read_scores(tmp_path / "runs" / augmentation)[0]
    assert scores[fused].dtype == np.float32 and scores[fused].shape == (48, 10)
    assert np.array_equal(scores[fused].view(np.int32), scores[unfused].view(np.int32))


@pytest.mark.slow
def test_a_run_without_a_timm_model_imports_no_timm_and_records_its_version(tiny_root, tmp_path):
    code = textwrap.dedent(f"""
        import importlib.metadata, sys
        from harness import run
        record = run(dataset="tiny", data_root={str(tiny_root)!r}, model="tiny-cnn", size=32, epochs=1,
                     device="cpu", plugins=({TINY_PLUGIN!r},), out={str(tmp_path / "runs")!r})
        assert record.environment["versions"]["timm"] == importlib.metadata.version("timm"), record.environment
        assert "timm" not in sys.modules, "timm was imported"
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
