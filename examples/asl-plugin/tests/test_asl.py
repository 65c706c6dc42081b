"""Tests a plugin author would ship: ASL by hand, its BCE limit, saturated logits, `bench check`,
and a real `bench run --loss asl` that counts the loss's calls.

Run them with the package installed (``pip install -e .``), so that the entry point exists.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

import asl_plugin
from harness.cli import main

# p = σ(x) = 3/4, 1/2, 1/100 in row 0 and 1/4, 3/4, 1/2 in row 1
LOGITS = torch.tensor([[math.log(3), 0.0, -math.log(99)], [-math.log(3), math.log(3), 0.0]])
TARGETS = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 1.0]])


def test_asl_matches_a_hand_computation():
    # γ+ = 0: positives are −log p. γ− = 4, m = 0.05: p_m = 0.45 and 0.70 for the negatives at
    # p = 1/2 and 3/4, and the negative at p = 1/100 ≤ m contributes nothing. Mean of six terms.
    positives = [-math.log(0.75), -math.log(0.25), -math.log(0.5)]
    negatives = [-(0.45 ** 4) * math.log(0.55), -(0.70 ** 4) * math.log(0.30), 0.0]
    assert asl_plugin.asymmetric_loss(LOGITS, TARGETS).item() == pytest.approx(sum(positives + negatives) / 6)
    # γ+ = 1 weights each positive by 1 − p = 1/4, 3/4, 1/2
    focused = [0.25 * positives[0], 0.75 * positives[1], 0.5 * positives[2]]
    value = asl_plugin.asymmetric_loss(LOGITS, TARGETS, gamma_pos=1.0)
    assert value.item() == pytest.approx(sum(focused + negatives) / 6)


def test_without_focusing_or_margin_it_is_the_protocols_mean_bce():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 5, generator=generator) * 5
    targets = (torch.rand(8, 5, generator=generator) < 0.4).float()
    value = asl_plugin.asymmetric_loss(logits, targets, gamma_pos=0.0, gamma_neg=0.0, margin=0.0)
    assert torch.allclose(value, F.binary_cross_entropy_with_logits(logits, targets), rtol=1e-6, atol=0)
    assert not torch.allclose(asl_plugin.asymmetric_loss(logits, targets), value)  # the defaults do differ


@pytest.mark.parametrize("settings", [{}, {"gamma_pos": 0.0, "gamma_neg": 0.0, "margin": 0.0}, {"margin": 0.0}])
def test_saturated_logits_give_finite_values_and_gradients(settings):
    logits = torch.tensor([[40.0, -40.0, 0.0], [-40.0, 40.0, 200.0], [-200.0, 200.0, -200.0]], requires_grad=True)
    targets = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    value = asl_plugin.asymmetric_loss(logits, targets, **settings)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(logits.grad).all()
    # a positive at x = −40 or −200 costs −log σ(x) = |x| and pulls with slope −1 (over 9 terms)
    assert logits.grad[0, 1].item() == pytest.approx(-1 / 9)
    assert logits.grad[2, 2].item() == pytest.approx(-1 / 9)


def test_saturated_negatives_by_hand():
    # the negative at x = 40 has p_m = 0.95 and log(1 − p_m) = log 0.05; at x = −40, p ≤ m: nothing
    logits = torch.tensor([[40.0, -40.0]])
    value = asl_plugin.asymmetric_loss(logits, torch.zeros(1, 2))
    assert value.item() == pytest.approx(-(0.95 ** 4) * math.log(0.05) / 2, rel=1e-6)


def test_plugin_is_installed_under_its_entry_point():
    result = CliRunner().invoke(main, ["plugins", "--json"])
    (plugin,) = [p for p in json.loads(result.stdout) if p["name"] == "asl"]
    assert plugin["source"] == "distribution"
    assert (plugin["distribution"], plugin["distribution_version"]) == ("multilabel-bench-asl", asl_plugin.__version__)
    assert [(c["kind"], c["name"]) for c in plugin["components"]] == [("loss", "asl")]


def test_bench_check_passes():
    result = CliRunner().invoke(main, ["check", "--plugin", "asl"])
    assert result.exit_code == 0, result.output
    assert "✓ finite for saturated logits" in result.stdout
    assert "✗" not in result.stdout
    assert re.fullmatch(r"\d+ passed, 0 failed, 0 skipped", result.stdout.splitlines()[-1])


def test_bench_run_trains_every_batch_with_asl_and_records_it(manifest, tmp_path, monkeypatch):
    path, declared = manifest
    calls = []
    original = asl_plugin.asymmetric_loss

    def counting_loss(logits, targets):
        value = original(logits, targets)
        calls.append((logits.dtype, targets.detach().cpu().numpy().copy(), value.item()))
        return value

    monkeypatch.setattr(asl_plugin, "asymmetric_loss", counting_loss)  # register_losses reads it when bench run loads plugins
    result = CliRunner().invoke(main, [
        "run", "--dataset", "manifest", "--data-root", str(path), "--loss", "asl", "--epochs", "2",
        "--size", "32", "--device", "cpu", "--no-cache", "--quiet", "--out", str(tmp_path), "--run-id", "asl",
    ])
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "asl"
    record = json.loads((run_dir / "result.json").read_text())
    log = json.loads((run_dir / "log.json").read_text())
    batch_size = json.loads((run_dir / "run.json").read_text())["batch_size"]

    # before training, the harness's gradient check calls the loss in float64; training calls are float32
    dtypes = [dtype for dtype, _, _ in calls]
    first = dtypes.index(torch.float32)
    assert set(dtypes[:first]) == {torch.float64} and set(dtypes[first:]) == {torch.float32}
    training = calls[first:]

    n_train = record["dataset"]["n_train"]
    batches = [min(batch_size, n_train - start) for start in range(0, n_train, batch_size)]
    assert (n_train, batches, len(log)) == (40, [32, 8], 2)
    assert [len(targets) for _, targets, _ in training] == batches * len(log)
    train_targets = (declared["train"] != 0).astype(np.float32)  # ignored labels trained as present
    for epoch, entry in enumerate(log):
        calls_of_epoch = training[epoch * len(batches):(epoch + 1) * len(batches)]
        seen = np.concatenate([targets for _, targets, _ in calls_of_epoch])
        assert sorted(map(tuple, seen)) == sorted(map(tuple, train_targets))  # every image once per epoch
        mean = sum(value * len(targets) for _, targets, value in calls_of_epoch) / n_train
        assert entry["loss"] == pytest.approx(mean, rel=1e-5)

    plugin = record["loss"]["plugin"]
    assert (plugin["source"], plugin["distribution"], plugin["distribution_version"]) == (
        "distribution", "multilabel-bench-asl", asl_plugin.__version__)
    assert (record["loss"]["name"], record["loss"]["version"]) == ("asl", "1")
    assert record["protocol"]["deviations"]["loss"] == {"protocol": "bce", "used": "asl", "version": "1",
                                                        "plugin": plugin}
