"""Recipes: the built-in sgd-step repeats the per-epoch step schedule exactly, another recipe is
trained, recorded as a deviation, scored with its EMA and resumed bit for bit, and every way of
changing the optimizer outside a recipe is refused or recorded and then refused at submission."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import TESTS, TINY_PLUGIN

from harness import recipes
from harness.cli import main
from harness.errors import UserError
from harness.leaderboard.submit import submit
from harness.protocol import get_protocol
from harness.registry import Registry
from harness.sweep import load_grid

RECIPE_PLUGIN = str(TESTS / "recipe_plugin.py")
RECIPE = "adamw-onecycle-ema"


def tiny_args(root, out, *extra, epochs="2"):
    return ["run", "--plugin", TINY_PLUGIN, "--plugin", RECIPE_PLUGIN, "--dataset", "tiny", "--data-root", str(root),
            "--protocol", "smoke", "--size", "32", "--epochs", epochs, "--device", "cpu", "--out", str(out), "--quiet",
            *extra]


def invoke(args):
    return CliRunner().invoke(main, [*map(str, args)])


def in_subprocess(args, **env):
    """``bench ARGS`` in its own process: plugins that patch torch must not patch this one."""
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]), **env)
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], env=environment, capture_output=True,
                          text=True)


def error_line(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in output, output
    return lines[0]


def test_sgd_step_changes_the_rates_exactly_when_the_per_epoch_schedule_did():
    """The old trainer stepped MultiStepLR(milestones in epochs) once per epoch; sgd-step steps
    milestones in steps after every optimizer step: the rates at each epoch's steps are the same bits."""
    protocol = get_protocol("wang2019")
    steps, epochs = 7, protocol.epochs
    registry = Registry()
    plan, scheduler = recipes.planned(registry.get("recipe", "sgd-step"), protocol, steps, epochs)
    assert scheduler == "torch.optim.lr_scheduler.MultiStepLR" and plan[0]["class"] == "torch.optim.sgd.SGD"
    parameters = [torch.nn.Parameter(torch.zeros(1)) for _ in range(2)]
    old = torch.optim.SGD([{"params": [parameters[0]], "lr": protocol.lr_head, "name": "head"},
                           {"params": [parameters[1]], "lr": protocol.lr_backbone, "name": "backbone"}],
                          lr=protocol.lr_head, momentum=protocol.momentum, weight_decay=protocol.weight_decay)
    per_epoch = torch.optim.lr_scheduler.MultiStepLR(old, milestones=list(protocol.lr_milestones), gamma=protocol.lr_gamma)
    for epoch in range(epochs):
        made = [(g["lr"], g["momentum"], g["weight_decay"]) for g in plan[epoch]["param_groups"]]
        assert made == [(g["lr"], g["momentum"], g["weight_decay"]) for g in old.param_groups]
        old.step()
        per_epoch.step()
    assert plan[-1]["param_groups"][0]["lr"] == protocol.lr_head * protocol.lr_gamma


def test_a_recipe_must_optimise_every_parameter_once():
    registry = Registry([RECIPE_PLUGIN])
    component = registry.get("recipe", "sgd-step")
    parameters = [torch.nn.Parameter(torch.zeros(1)) for _ in range(2)]
    short = type(component)(component.kind, type(component.spec)(
        "partial", lambda groups, protocol: torch.optim.SGD(groups[0]["params"], lr=0.1)), component.plugin)
    groups = [{"params": [parameters[0]], "lr": 0.1, "name": "head"}, {"params": [parameters[1]], "lr": 0.1, "name": "backbone"}]
    with pytest.raises(UserError, match=r"holds 1 parameter\(s\) where 2 were given"):
        recipes.build(short, groups, get_protocol("smoke"), 3)


def test_ema_follows_its_formula():
    model = torch.nn.Linear(2, 1)
    ema = recipes.Ema(model, 0.75)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(4.0)
    ema.update(model)
    assert torch.allclose(ema.state["weight"], 0.75 * start + 0.25 * (start + 4.0))


def test_registry_and_check_know_recipes(tmp_path):
    listed = json.loads(invoke(["plugins", "--json", "--plugin", RECIPE_PLUGIN]).output)
    kinds = {(c["kind"], c["name"]) for p in listed for c in p["components"]}
    assert ("recipe", "sgd-step") in kinds and ("recipe", RECIPE) in kinds
    checked = invoke(["check", "--plugin", RECIPE_PLUGIN, "--component", RECIPE])
    assert checked.exit_code == 0, checked.output
    assert "torch.optim.adamw.AdamW, schedule torch.optim.lr_scheduler.OneCycleLR, EMA 0.9" in checked.output
    bad = tmp_path / "bad_recipe.py"
    bad.write_text("from harness import RecipeSpec, hookimpl\n\n@hookimpl\ndef register_recipes(register):\n"
                   "    register(RecipeSpec('bad', make_optimizer=print, ema_decay=1.5))\n")
    line = error_line(invoke(["run", "--plugin", str(bad), "--recipe", "bad"]).output)
    assert "recipe 'bad' ema_decay 1.5 must be a number between 0 and 1" in line


def test_sweep_grid_key_recipes_makes_one_cell_per_recipe(tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text('protocol = "smoke"\ndatasets = ["shapes"]\nmodels = ["smallcnn"]\naugmentations = ["flip"]\n'
                    f'sizes = [32]\nrecipes = ["sgd-step", "{RECIPE}"]\n')
    cells = load_grid(grid).cells
    assert [(c.recipe, c.run_id) for c in cells] == [
        ("sgd-step", "shapes-smallcnn-flip-32-smoke-seed0"), (RECIPE, f"shapes-smallcnn-flip-32-smoke-seed0-{RECIPE}")]


@pytest.mark.slow
def test_a_recipe_trains_is_recorded_as_a_deviation_scored_with_its_ema_and_resumes_exactly(tiny_root, tmp_path):
    out = tmp_path / "straight"
    result = invoke(tiny_args(tiny_root, out, "--model", "tiny-cnn", "--recipe", RECIPE))
    assert result.exit_code == 0, result.output
    run_dir = out / f"tiny-tiny-cnn-flip-32-smoke-seed0-{RECIPE}"
    record = json.loads((run_dir / "result.json").read_text())
    recipe = record["recipe"]
    assert (recipe["name"], recipe["ema_decay"], recipe["optimizer"], recipe["scheduler"], recipe["steps_per_epoch"]) == (
        RECIPE, 0.9, "torch.optim.adamw.AdamW", "torch.optim.lr_scheduler.OneCycleLR", 96 // 32)
    deviation = record["protocol"]["deviations"]["recipe"]
    assert (deviation["protocol"], deviation["used"], deviation["ema_decay"]) == ("sgd-step", RECIPE, 0.9)
    log = json.loads((run_dir / "log.json").read_text())
    held = log[1]["optimizer"]
    assert held["class"] == "torch.optim.adamw.AdamW"
    assert [g["weight_decay"] for g in held["param_groups"]] == [0.05, 0.05] and held["param_groups"][0]["betas"][1] == 0.999
    assert log[0]["lr"]["head"] < log[1]["lr"]["head"]  # one-cycle warms up
    assert "recipe: sgd-step → adamw-onecycle-ema" in _deviations_row(run_dir, tmp_path)
    # the same training without the EMA: the same losses and rates, other scored (and saved) weights
    plain = invoke(tiny_args(tiny_root, tmp_path / "plain", "--model", "tiny-cnn", "--recipe", "adamw-onecycle"))
    assert plain.exit_code == 0, plain.output
    plain_dir = tmp_path / "plain" / "tiny-tiny-cnn-flip-32-smoke-seed0-adamw-onecycle"
    plain_log = json.loads((plain_dir / "log.json").read_text())
    assert [(e["loss"], e["optimizer"]) for e in plain_log] == [(e["loss"], e["optimizer"]) for e in log]
    with np.load(run_dir / "scores.npz") as a, np.load(plain_dir / "scores.npz") as b:
        assert not np.array_equal(a["scores"], b["scores"])
    ema_weights = torch.load(run_dir / "model.pt", weights_only=True)
    trained = torch.load(plain_dir / "model.pt", weights_only=True)
    assert not torch.equal(ema_weights["head.weight"], trained["head.weight"])
    # interrupted after epoch 1 and resumed: the same bits (scheduler and EMA come back from the checkpoint)
    killed_out = tmp_path / "killed"
    killed = in_subprocess(tiny_args(tiny_root, killed_out, "--model", "tiny-cnn", "--recipe", RECIPE, "--aug",
                                     "recording-flip", epochs="2"), TINY_KILL_AT_EPOCH="1")
    assert killed.returncode == -9, killed.stderr
    resumed_dir = killed_out / f"tiny-tiny-cnn-recording-flip-32-smoke-seed0-{RECIPE}"
    resumed = in_subprocess(["run", "--resume", resumed_dir, "--plugin", TINY_PLUGIN, "--plugin", RECIPE_PLUGIN, "--quiet"])
    assert resumed.returncode == 0, resumed.stderr
    with np.load(run_dir / "scores.npz") as a, np.load(resumed_dir / "scores.npz") as b:
        assert np.array_equal(a["scores"], b["scores"])


def _deviations_row(run_dir: Path, tmp_path: Path) -> str:
    """Submit ``run_dir`` to a fresh leaderboard, build it, and return its markdown table."""
    root = tmp_path / "lb"
    submit(run_dir, root, Registry([TINY_PLUGIN, RECIPE_PLUGIN]))
    built = invoke(["leaderboard", "build", "--leaderboards", root])
    assert built.exit_code == 0, built.output
    return "\n".join(path.read_text() for path in (root / "tables").glob("*.md"))


@pytest.mark.slow
def test_an_optimizer_swapped_at_import_is_refused(tiny_root, tmp_path):
    swap = tmp_path / "swap_plugin.py"
    swap.write_text("import torch\n\ntorch.optim.SGD = torch.optim.Adam\n")
    result = in_subprocess(["run", "--plugin", swap, *tiny_args(tiny_root, tmp_path, "--model", "tiny-cnn")[1:]])
    line = error_line(result.stderr + result.stdout)
    assert "replaced torch.optim.SGD when it was imported" in line
    assert not (tmp_path / "tiny-tiny-cnn-flip-32-smoke-seed0").exists()


@pytest.mark.slow
def test_a_weight_decay_patched_in_during_build_is_refused(tiny_root, tmp_path):
    result = in_subprocess(tiny_args(tiny_root, tmp_path, "--model", "tiny-patching-sgd"))
    line = error_line(result.stderr + result.stdout)
    assert ("model 'tiny-patching-sgd' (plugin " in line and "replaced torch.optim.sgd.SGD.__init__ during build" in line
            and "is a recipe" in line)
    assert not (tmp_path / "tiny-tiny-patching-sgd-flip-32-smoke-seed0").exists()


@pytest.mark.slow
def test_an_undeclared_optimizer_change_is_recorded_and_refused_at_submission(tiny_root, tmp_path):
    result = invoke(tiny_args(tiny_root, tmp_path, "--model", "tiny-changing-optimizer"))
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "tiny-tiny-changing-optimizer-flip-32-smoke-seed0"
    log = json.loads((run_dir / "log.json").read_text())
    assert [group["weight_decay"] for group in log[0]["optimizer"]["param_groups"]] == [1e-3, 1e-3]
    root = tmp_path / "lb"
    with pytest.raises(UserError) as refused:
        submit(run_dir, root, Registry([TINY_PLUGIN, RECIPE_PLUGIN]))
    assert str(refused.value) == (
        f"{run_dir / 'log.json'}: epoch 0 optimizer.param_groups[0].weight_decay is 0.001, where the recipe gives 0.0 "
        "(recipe 'sgd-step' (plugin 'plugins.recipes')); the optimizer was changed outside the recipe: declare the "
        "change in a recipe (harness.RecipeSpec) and train again")
    assert not (root / "submissions" / "tiny").exists()


@pytest.mark.slow
def test_a_log_edited_to_hide_another_optimizer_is_refused(tiny_root, tmp_path):
    result = invoke(tiny_args(tiny_root, tmp_path, "--model", "tiny-cnn", epochs="1"))
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "tiny-tiny-cnn-flip-32-smoke-seed0"
    log = json.loads((run_dir / "log.json").read_text())
    log[0]["optimizer"]["class"] = "torch.optim.adam.Adam"
    (run_dir / "log.json").write_text(json.dumps(log))
    with pytest.raises(UserError, match=r"epoch 0 optimizer.class is 'torch.optim.adam.Adam', where the recipe gives "
                                        r"'torch.optim.sgd.SGD'"):
        submit(run_dir, tmp_path / "lb", Registry([TINY_PLUGIN]))
