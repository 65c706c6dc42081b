"""What a model or loss declares (params, upstream, paper, code, normalisation) and the run
context ``build`` may ask for (``size``): applied by the core, recorded in result.json,
listed by ``bench compare``; a declaration the record could not hold refused in one line."""

from __future__ import annotations

import json
import sys

import pytest
from click.testing import CliRunner
from conftest import TINY_PLUGIN

from harness.cli import main
from harness.registry import Registry

PLUGIN = '''
import torch.nn as nn

from harness import LossSpec, ModelSpec, hookimpl

SEEN = {"sizes": [], "inputs": []}


class Net(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, stride=4), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(4, num_classes)

    def forward(self, x):
        SEEN["inputs"].append((float(x.min()), float(x.max())))
        return self.head(self.features(x))


def build(num_classes, pretrained, size):
    SEEN["sizes"].append(size)
    return Net(num_classes)


def asl(logits, targets):
    return nn.functional.binary_cross_entropy_with_logits(logits, targets)


@hookimpl
def register_models(register):
    for name, gamma in (("declared-a", 4), ("declared-b", 2)):
        register(ModelSpec(name=name, build=build, version="1", head_prefixes=("head",),
                           normalization=((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
                           params={"gamma": gamma, "heads": [1, 2], "decoder": {"layers": 1}},
                           upstream="owner/repo@0123abc", paper="https://arxiv.org/abs/2009.14119",
                           code="https://github.com/owner/repo"))


@hookimpl
def register_losses(register):
    register(LossSpec(name="asl-declared", loss=asl, version="1", params={"gamma_neg": 4, "clip": 0.05},
                      upstream="owner/asl@89abcdef"))
'''


def bench(*args):
    return CliRunner().invoke(main, [*map(str, args)])


def seen(plugin_path) -> dict:
    (module,) = [m for name, m in sys.modules.items() if name.startswith("multilabel_bench_plugin_declared_")
                 and getattr(m, "__file__", None) == str(plugin_path)]
    return module.SEEN


@pytest.mark.slow
def test_declarations_are_applied_recorded_and_compared(tmp_path, tiny_root):
    plugin = tmp_path / "declared.py"
    plugin.write_text(PLUGIN)
    runs = {}
    for model in ("declared-a", "declared-b"):
        result = bench("run", "--plugin", TINY_PLUGIN, "--plugin", plugin, "--dataset", "tiny", "--data-root",
                       tiny_root, "--model", model, "--loss", "asl-declared", "--protocol", "smoke", "--size", "48",
                       "--epochs", 1, "--device", "cpu", "--out", tmp_path / "runs", "--quiet")
        assert result.exit_code == 0, result.output
        runs[model] = next((tmp_path / "runs").glob(f"tiny-{model}-*"))
    record = json.loads((runs["declared-a"] / "result.json").read_text())
    model, loss = record["model"], record["loss"]
    assert model["normalization"] == {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}
    assert model["params"] == {"gamma": 4, "heads": [1, 2], "decoder": {"layers": 1}}
    assert (model["upstream"], model["paper"], model["code"]) == (
        "owner/repo@0123abc", "https://arxiv.org/abs/2009.14119", "https://github.com/owner/repo")
    assert model["context"]["size"] == 48
    assert (loss["params"], loss["upstream"]) == ({"gamma_neg": 4, "clip": 0.05}, "owner/asl@89abcdef")

    state = seen(plugin)
    assert state["sizes"] == [48, 48]  # each run's build got the run's size
    # Scoring is the last forward pass: images in [0, 1] under (x - 0) / 1, where ImageNet's
    # normalisation would give values below -2.
    low, high = state["inputs"][-1]
    assert 0.0 <= low < high <= 1.0

    result = bench("compare", runs["declared-a"], runs["declared-b"])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0] + " " + line.split()[1]: line for line in result.output.splitlines() if "params" in line}
    assert '{"decoder":{"layers":1},"gamma":4,"heads":[1,2]}' in rows["model params"]
    assert '{"decoder":{"layers":1},"gamma":2,"heads":[1,2]}' in rows["model params"]
    assert "loss params" not in rows  # the same loss settings: not a difference


def test_default_models_get_imagenet_s_normalization_and_timm_models_their_pretrained_cfg_s():
    registry = Registry()
    assert registry.get("model", "smallcnn").spec.normalization == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    vit = registry.get("model", "timm:vit_tiny_patch16_224").spec.build(3, False, variant="vit_tiny_patch16_224")
    cfg = vit.pretrained_cfg
    assert vit.normalization == (tuple(cfg["mean"]), tuple(cfg["std"])) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


@pytest.mark.parametrize("declaration, message", [
    ('params={"gamma": {1, 2}}', "model 'bad' has params that are not JSON values (Object of type set is not JSON "
                                 "serializable); use numbers, strings, booleans, lists and dicts"),
    ('params={"gamma": float("nan")}', "model 'bad' has params that are not JSON values (Out of range float values "
                                       "are not JSON compliant); use numbers, strings, booleans, lists and dicts"),
    ('upstream="https://github.com/owner/repo"', "model 'bad' has upstream 'https://github.com/owner/repo'; give "
                                                 "owner/repo@commit (the commit's hex digits)"),
    ('paper="see the README"', "model 'bad' has paper 'see the README'; give an http(s) URL"),
    ("normalization=((0.5, 0.5), (1, 1))", "model 'bad' has normalization ((0.5, 0.5), (1, 1)); give (mean, std), "
                                           "3 finite values each, std > 0"),
    ("normalization=((0.5, 0.5, 0.5), (1, 0, 1))", "model 'bad' has normalization ((0.5, 0.5, 0.5), (1, 0, 1)); give "
                                                  "(mean, std), 3 finite values each, std > 0"),
])
def test_a_declaration_the_record_cannot_hold_is_refused_naming_the_plugin(tmp_path, declaration, message):
    plugin = tmp_path / "bad_declaration.py"
    plugin.write_text(f'''
from harness import ModelSpec, hookimpl

@hookimpl
def register_models(register):
    register(ModelSpec(name="bad", build=lambda num_classes, pretrained: None, {declaration}))
''')
    (found,) = [p for p in Registry((str(plugin),)).plugins if p.name == str(plugin)]
    assert found.error.startswith(f"register_models raised PluginError: plugin {str(plugin)!r}: ")
    assert "\n" not in found.error and found.error.rstrip("…") in f"{found.error[:36]}plugin {str(plugin)!r}: {message}"
    assert message in found.error_traceback


def test_default_models_are_normalised_bit_for_bit_as_before_and_stored_records_read_as_imagenet_s():
    """The stored smoke submissions were trained with the protocol's ImageNet tensors: a default
    model gets the very same tensors, and their records (written before normalization was
    recorded) compare equal to a re-trained one's."""
    from pathlib import Path

    import torch

    from harness import pipeline
    from harness.declared import model_normalization
    from harness.leaderboard.store import stored_bundles
    from harness.leaderboard.reproduce import comparable
    from harness.protocol import WANG2019

    component = Registry().get("model", "smallcnn")
    model = component.spec.build(5, False)
    before = pipeline.normalization(WANG2019.normalize_mean, WANG2019.normalize_std, "cpu")
    now = pipeline.normalization(*model_normalization(model, component.spec, component.label), "cpu")
    assert all(torch.equal(a, b) for a, b in zip(before, now))
    bundles = [b for b in stored_bundles(Path(__file__).resolve().parents[1] / "leaderboards") if b.record.kind == "train"]
    assert bundles and all("normalization" not in b.result["model"] for b in bundles)
    for bundle in bundles:
        model_part = comparable(bundle.record)["model"]
        assert model_part["normalization"] == {"mean": list(WANG2019.normalize_mean), "std": list(WANG2019.normalize_std)}
        assert (model_part["params"], model_part["upstream"], model_part["paper"], model_part["code"]) == ({}, None, None, None)
