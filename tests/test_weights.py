"""Pretrained weights come from local files only, are recorded with their sha256, and are really loaded."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision
from click.testing import CliRunner
from conftest import TINY_PLUGIN

from harness import weights
from harness.cli import main
from harness.registry import Registry
from harness.naming import sha256_of


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    return folder


def test_resnet18_imagenet_weights_load_from_the_hub_cache_and_are_recorded(torch_home):
    torch.manual_seed(7)
    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), torch_home / "resnet18-f37072fd.pth")
    spec = Registry().get("model", "resnet18").spec
    with weights.recording() as record:
        model = spec.build(5, True)
    assert torch.equal(model.conv1.weight, reference.conv1.weight)
    assert torch.equal(model.layer4[1].bn2.running_mean, reference.layer4[1].bn2.running_mean)
    assert model.fc.out_features == 5
    assert record.files == [{"file": str(torch_home / "resnet18-f37072fd.pth"),
                             "expected_name": "resnet18-f37072fd.pth",
                             "sha256": sha256_of(torch_home / "resnet18-f37072fd.pth"),
                             "matches_published": False}]


def test_published_torchvision_files_are_recognised_by_name():
    assert weights.matches_published("resnet101-63fe2227.pth", "63fe2227" + "0" * 56)
    assert not weights.matches_published("resnet101-63fe2227.pth", "deadbeef" + "0" * 56)
    assert not weights.matches_published("my-weights.pth", "0" * 64)


def test_missing_weights_file_is_one_line_saying_where_to_put_it(torch_home, tiny_root, tmp_path):
    result = CliRunner().invoke(main, [
        "run", "--dataset", "tiny", "--plugin", TINY_PLUGIN, "--data-root", str(tiny_root), "--model", "resnet18",
        "--pretrained", "imagenet", "--size", "32", "--epochs", "1", "--device", "cpu", "--out", str(tmp_path),
        "--quiet"])
    assert result.exit_code == 1
    line = result.output.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert f"resnet18-f37072fd.pth not found at {torch_home / 'resnet18-f37072fd.pth'}" in line
    assert "--pretrained none" in line


@pytest.mark.slow
def test_pretrained_path_is_loaded_and_its_hash_recorded(tiny_root, tmp_path):
    from tiny_plugin import build_tiny_cnn

    torch.manual_seed(11)
    donor = build_tiny_cnn(10, False)
    weights_file = tmp_path / "my-features.pth"
    torch.save(donor.features.state_dict(), weights_file)
    with weights.recording(weights_file):
        loaded = build_tiny_cnn(10, True)
    assert torch.equal(loaded.features[0].weight, donor.features[0].weight)

    result = CliRunner().invoke(main, [
        "run", "--dataset", "tiny", "--plugin", TINY_PLUGIN, "--data-root", str(tiny_root), "--model", "tiny-cnn",
        "--pretrained", str(weights_file), "--size", "32", "--epochs", "1", "--device", "cpu",
        "--out", str(tmp_path / "runs"), "--quiet"])
    assert result.exit_code == 0, result.output
    record = json.loads(next((tmp_path / "runs").glob("*/result.json")).read_text())
    assert record["model"]["pretrained"]["mode"] == "file"
    assert record["model"]["pretrained"]["files"][0]["sha256"] == sha256_of(weights_file)
    assert record["model"]["pretrained"]["files"][0]["matches_published"] is False
    assert record["protocol"]["deviations"]["init"] == {"protocol": "none", "used": "file"}


def test_a_model_that_ignores_pretrained_is_refused(tmp_path, tiny_root):
    plugin = tmp_path / "lazy_plugin.py"
    plugin.write_text(
        "import torch.nn as nn\n"
        "from harness import ModelSpec, hookimpl\n"
        "def build(num_classes, pretrained):\n"
        "    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))\n"
        "@hookimpl\n"
        "def register_models(register):\n"
        "    register(ModelSpec(name='lazy', build=build, head_prefixes=('1',)))\n"
    )
    result = CliRunner().invoke(main, [
        "run", "--dataset", "tiny", "--plugin", TINY_PLUGIN, "--plugin", str(plugin), "--data-root", str(tiny_root),
        "--model", "lazy", "--pretrained", "imagenet", "--size", "32", "--epochs", "1", "--device", "cpu",
        "--out", str(tmp_path / "runs")])
    assert result.exit_code == 1
    assert "did not load pretrained weights through harness.weights" in result.output
    assert "never falls back to random weights" in result.output
