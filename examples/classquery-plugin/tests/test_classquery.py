"""Tests a method author would ship: the head's attention by hand, the recipe's rates, `bench
check`, and a real `bench run --recipe classquery-adamw` recorded as a deviation and shown on a
leaderboard's deviations section.

Run them with the package installed (``pip install -e .``), so that the entry point exists.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from classquery import recipe
from classquery.upstream import ClassQueryHead
from harness.cli import main

PACKAGE = Path(__file__).resolve().parents[1] / "classquery"
RUN = ["--dataset", "manifest", "--protocol", "smoke", "--size", "32", "--epochs", "2", "--batch-size", "16",
       "--device", "cpu", "--pretrained", "none", "--model", "classquery-resnet18", "--recipe", "classquery-adamw",
       "--quiet"]


def bench(*args):
    return CliRunner().invoke(main, [*map(str, args)])


def test_attention_and_readout_match_a_hand_computation():
    head = ClassQueryHead(channels=1, num_classes=1, width=1)
    with torch.no_grad():
        head.keys.weight.fill_(1.0), head.keys.bias.zero_()
        head.values.weight.fill_(2.0), head.values.bias.zero_()
        head.queries.fill_(1.0), head.readout.fill_(3.0), head.bias.fill_(0.5)
    # two positions with features 0 and ln 3: keys 0 and ln 3, so softmax gives 1/4 and 3/4;
    # values 0 and 2 ln 3 attended to 3/2 ln 3; the logit is 3 · 3/2 ln 3 + 1/2
    features = torch.tensor([[[[0.0, math.log(3)]]]])
    assert head.attention(features)[0, 0].tolist() == pytest.approx([0.25, 0.75])
    assert head(features).item() == pytest.approx(4.5 * math.log(3) + 0.5)


def test_recipe_rates_warm_up_and_anneal_per_group():
    head, backbone = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    protocol = type("Protocol", (), {"epochs": 5})()
    optimizer = recipe.make_optimizer([{"params": [head], "lr": 0.05, "name": "head"},
                                       {"params": [backbone], "lr": 0.05, "name": "backbone"}], protocol)
    scheduler = recipe.make_scheduler(optimizer, protocol, steps_per_epoch=10)
    rates = []
    for _ in range(50):
        rates.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    peak = max(range(50), key=lambda step: rates[step][0])
    assert peak == round(recipe.WARMUP * 50) - 1
    assert rates[peak] == pytest.approx([recipe.RATES["head"], recipe.RATES["backbone"]])
    assert rates[-1][0] < rates[0][0] < rates[peak][0]
    assert [group["weight_decay"] for group in optimizer.param_groups] == [recipe.WEIGHT_DECAY] * 2


def test_bench_check_passes_installed_and_as_a_package_folder():
    for plugin in ("classquery", f"{PACKAGE}/"):
        result = bench("check", "--plugin", plugin, "--component", "classquery-resnet18",
                       "--component", "classquery-adamw")
        assert result.exit_code == 0, result.output
        assert "0 failed" in result.output


def test_bench_run_records_the_recipe_as_a_deviation_and_the_leaderboard_names_it(manifest, tmp_path):
    result = bench("run", "--data-root", manifest, *RUN, "--out", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "runs" / "manifest-classquery-resnet18-flip-32-smoke-seed0-classquery-adamw"
    record = json.loads((run_dir / "result.json").read_text())
    assert record["recipe"]["name"] == "classquery-adamw" and record["recipe"]["ema_decay"] == recipe.EMA_DECAY
    assert record["recipe"]["plugin"]["distribution"] == "multilabel-bench-classquery"
    deviation = record["protocol"]["deviations"]["recipe"]
    assert (deviation["protocol"], deviation["used"]) == ("sgd-step", "classquery-adamw")
    log = json.loads((run_dir / "log.json").read_text())
    assert [entry["optimizer"]["class"] for entry in log] == ["torch.optim.adamw.AdamW"] * 2
    root = tmp_path / "leaderboards"
    submitted = bench("leaderboard", "submit", run_dir, "--leaderboards", root)
    assert submitted.exit_code == 0, submitted.output
    built = bench("leaderboard", "build", "--leaderboards", root)
    assert built.exit_code == 0, built.output
    table = "\n".join(path.read_text() for path in sorted((root / "tables").glob("*.md")))
    deviations = table[table.index("deviations from the protocol"):]
    assert "classquery-resnet18" in deviations and "recipe: sgd-step → classquery-adamw" in deviations
