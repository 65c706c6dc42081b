"""The protocol, exactly: fields, parameter groups, the schedule the optimizer used, transforms."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import TINY_PLUGIN

from harness.cli import main
from harness.protocol import SMOKE, WANG2019
from harness.train import parameter_groups
from plugins.augmentations import augment_flip, augment_mixup, mix_batch


def test_protocol_show_json_says_what_protocol_md_says():
    result = CliRunner().invoke(main, ["protocol", "show", "wang2019", "--json"])
    assert result.exit_code == 0
    shown = json.loads(result.output)
    expected = {
        "epochs": 40, "batch_size": 16, "lr_head": 0.1, "lr_backbone": 0.01, "momentum": 0.9,
        "weight_decay": 0.0, "lr_milestones": [20], "lr_gamma": 0.1, "sizes": [384, 448, 512],
        "optimizer": "sgd", "loss": "bce", "init": "imagenet", "version": 2, "crop_source": "original",
        "normalize_mean": [0.485, 0.456, 0.406], "normalize_std": [0.229, 0.224, 0.225],
        "test_transform": "resize_square", "ignored_labels_in_training": "positive",
        "mixup_epochs": "even", "evaluation": "last_epoch", "hash": WANG2019.hash,
    }
    assert {key: shown[key] for key in expected} == expected


def _other_value(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, tuple):
        return value[:-1] + (_other_value(value[-1]),)
    return value + "x"


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(WANG2019)])
def test_protocol_hash_covers_every_rule_and_not_the_description(field):
    changed = dataclasses.replace(WANG2019, **{field: _other_value(getattr(WANG2019, field))})
    assert (changed.hash == WANG2019.hash) == (field == "description")


def test_overrides_are_deviations_and_smoke_differs():
    from harness.config import deviations
    from harness.results import ComponentRecord, PluginRecord

    assert len({WANG2019.hash, SMOKE.hash}) == 2
    assert dataclasses.replace(WANG2019, epochs=39).hash != WANG2019.hash
    bce = ComponentRecord(name="bce", version="1", plugin=PluginRecord(name="plugins.losses", source="built-in"))
    same = dict(batch_size=WANG2019.batch_size, size=448, init="imagenet", loss=bce)
    assert deviations(WANG2019, epochs=39, **same) == {"epochs": {"protocol": 40, "used": 39}}
    assert deviations(WANG2019, epochs=40, **same) == {}


@pytest.fixture(scope="module")
def paper_models():
    """The paper's two backbones, built once for every test here (VGG16 alone has 138M parameters)."""
    from harness.registry import Registry

    registry = Registry()
    return {name: (registry.get("model", name), registry.get("model", name).spec.build(classes, False))
            for name, classes in (("resnet101", 20), ("vgg16", 80))}


@pytest.mark.parametrize("name,head", [("resnet101", {"fc.weight", "fc.bias"}),
                                       ("vgg16", {f"classifier.{i}.{p}" for i in (0, 3, 6) for p in ("weight", "bias")})])
def test_head_and_backbone_groups_take_the_protocol_rates(paper_models, name, head):
    component, model = paper_models[name]
    groups = parameter_groups(model, component.spec.head_prefixes, WANG2019, name)
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)] for p in groups[0]["params"]} == head
    assert (groups[0]["lr"], groups[1]["lr"]) == (0.1, 0.01)
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == len(list(model.parameters()))


def test_paper_heads(paper_models):
    resnet, vgg = paper_models["resnet101"][1], paper_models["vgg16"][1]
    assert isinstance(resnet.avgpool, torch.nn.AdaptiveAvgPool2d) and resnet.fc.in_features == 2048
    assert resnet.fc.out_features == 20
    assert vgg.avgpool.output_size == (7, 7)
    assert [m.out_features for m in vgg.classifier if isinstance(m, torch.nn.Linear)] == [4096, 4096, 80]


@pytest.mark.slow
def test_learning_rates_the_optimizer_used_at_epochs_19_20_21(tiny_root, tmp_path):
    result = CliRunner().invoke(main, [
        "run", "--plugin", TINY_PLUGIN, "--dataset", "tiny", "--data-root", str(tiny_root), "--model", "tiny-cnn",
        "--protocol", "wang2019", "--epochs", "22", "--size", "32", "--pretrained", "none", "--device", "cpu",
        "--out", str(tmp_path), "--quiet"])
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "tiny-tiny-cnn-flip-32-wang2019-seed0"
    log = json.loads((run_dir / "log.json").read_text())
    used = {entry["epoch"]: entry["lr"] for entry in log}
    assert used[0] == used[19] == {"head": 0.1, "backbone": 0.01}
    assert used[20] == used[21] == pytest.approx({"head": 0.01, "backbone": 0.001})
    deviations = json.loads((run_dir / "result.json").read_text())["protocol"]["deviations"]
    assert set(deviations) == {"epochs", "sizes", "init"}


def test_mixup_on_even_epochs_averages_images_and_ors_labels():
    images = torch.rand(6, 3, 8, 8)
    targets = (torch.rand(6, 4) < 0.4).float()
    generator = torch.Generator().manual_seed(3)
    mixed, mixed_targets = mix_batch(images, targets, generator)
    partner = torch.randperm(6, generator=torch.Generator().manual_seed(3))
    assert torch.equal(mixed, (images + images[partner]) / 2)
    assert torch.equal(mixed_targets, ((targets + targets[partner]) > 0).float())

    odd_images, odd_targets = augment_mixup(images, targets, 1, torch.Generator().manual_seed(0))
    assert torch.equal(odd_targets, targets)
    even_images, even_targets = augment_mixup(images, targets, 0, torch.Generator().manual_seed(0))
    assert (even_targets >= targets).all() and not torch.equal(even_targets, targets)
    assert even_images.shape == images.shape


def test_flip_mirrors_a_seeded_half_of_the_batch():
    images = torch.rand(64, 3, 4, 4)
    flipped, _ = augment_flip(images, torch.zeros(64, 2), 0, torch.Generator().manual_seed(1))
    mirrored = torch.tensor([torch.equal(f, i.flip(-1)) for f, i in zip(flipped, images)])
    unchanged = torch.tensor([torch.equal(f, i) for f, i in zip(flipped, images)])
    assert (mirrored | unchanged).all() and 16 < mirrored.sum() < 48
    mask = torch.rand(64, generator=torch.Generator().manual_seed(1)) < 0.5
    assert torch.equal(mirrored, mask)


def test_test_transform_is_torchvisions_resize_square(tmp_path):
    from PIL import Image
    from torchvision import transforms

    from harness.pipeline import decode_resized

    rng = np.random.default_rng(0)
    path = tmp_path / "photo.jpg"
    Image.fromarray(rng.integers(0, 256, (75, 130, 3), dtype=np.uint8)).save(path)
    expected = np.asarray(transforms.Resize((48, 48))(Image.open(path).convert("RGB")))
    assert np.array_equal(decode_resized(path, 48), expected)
