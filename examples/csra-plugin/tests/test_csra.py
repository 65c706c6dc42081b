"""Tests a plugin author would ship: the attention formula by hand, the weights path, `bench check`.

Run them with the package installed (``pip install -e .``), so that the entry point exists.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from click.testing import CliRunner

import csra_plugin
from harness.cli import main


def score_maps(*rows):
    """(1, C, 1, W) score maps from one list of positions per class."""
    return torch.tensor([[[row] for row in rows]], dtype=torch.float64)


def test_pool_matches_a_hand_computation():
    # class 0, T=1: softmax([0, ln 3]) = [1/4, 3/4], so the attended score is 3/4 · ln 3;
    # the mean is ln 3 / 2, and with λ = 0.5 the logit is (1/2 + 3/8) · ln 3.
    # class 1, T=1: all positions equal, so both poolings give 2 and the logit is 2 + 0.5 · 2.
    logits = csra_plugin.residual_attention_pool(score_maps([0.0, math.log(3)], [2.0, 2.0]), lam=0.5, temperature=1.0)
    assert logits.shape == (1, 2)
    assert logits[0, 0].item() == pytest.approx(0.875 * math.log(3))
    assert logits[0, 1].item() == pytest.approx(3.0)


def test_temperature_sharpens_the_attention():
    # T=2 on [0, ln(3)/2] gives the same weights [1/4, 3/4]: attended 3/8 · ln 3, mean ln 3 / 4.
    logit = csra_plugin.residual_attention_pool(score_maps([0.0, math.log(3) / 2]), lam=0.5, temperature=2.0)
    assert logit.item() == pytest.approx((1 / 4 + 3 / 16) * math.log(3))
    # T = ∞ pools by the maximum: mean 1, max 3.
    logit = csra_plugin.residual_attention_pool(score_maps([-1.0, 1.0, 3.0]), lam=0.5, temperature=math.inf)
    assert logit.item() == pytest.approx(1 + 0.5 * 3)


def test_lambda_zero_is_global_average_pooling_and_a_linear_layer():
    torch.manual_seed(0)
    model = csra_plugin.build(5, False, backbone="resnet18", lam=0.0).eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = model.backbone(images).mean(dim=(2, 3))
        expected = features @ model.classifier.weight.flatten(1).T
        assert torch.allclose(model(images), expected, atol=1e-5)


def test_pretrained_backbone_comes_from_the_local_weights_file(tmp_path, monkeypatch):
    import torchvision

    from harness import weights

    torch.manual_seed(1)
    reference = torchvision.models.resnet18(weights=None)
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(reference.state_dict(), checkpoints / "resnet18-f37072fd.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with weights.recording() as record:
        model = csra_plugin.build(3, True, backbone="resnet18")
    assert torch.equal(model.backbone[0].weight, reference.conv1.weight)
    assert torch.equal(model.backbone[7][1].conv2.weight, reference.layer4[1].conv2.weight)
    assert [f["expected_name"] for f in record.files] == ["resnet18-f37072fd.pth"]


def test_plugin_is_installed_under_its_entry_point():
    result = CliRunner().invoke(main, ["plugins", "--json"])
    (plugin,) = [p for p in json.loads(result.stdout) if p["name"] == "csra"]
    assert plugin["source"] == "distribution"
    assert (plugin["distribution"], plugin["distribution_version"]) == ("multilabel-bench-csra", csra_plugin.__version__)
    assert [c["name"] for c in plugin["components"]] == ["csra-resnet18", "csra-resnet50", "csra-resnet101"]


def test_bench_check_passes():
    result = CliRunner().invoke(main, ["check", "--plugin", "csra", "--component", "csra-resnet18"])
    assert result.exit_code == 0, result.output
    assert "✗" not in result.stdout
    assert result.stdout.splitlines()[-1] == "10 passed, 0 failed, 0 skipped"
