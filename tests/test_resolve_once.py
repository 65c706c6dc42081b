"""Resolve once: a run's protocol is looked up once and carried by its ``ResolvedRun`` with
the device and precision it trains with; ``RunRecord.for_training`` / ``for_fusion`` build
the records; the lists of record fields consumers treat alike derive from the fields' roles."""

from __future__ import annotations

import dataclasses
import json

import pytest
from conftest import TINY_PLUGIN

import harness.config
from harness.config import ResolvedRun, RunConfig
from harness.errors import UserError
from harness.fusion import SHARED_FIELDS
from harness.leaderboard.bundle import VOLATILE_RESULT
from harness.leaderboard.reproduce import UNCOMPARED
from harness.protocol import SMOKE, WANG2019
from harness.registry import Registry
from harness.results import (
    ROLES,
    TRAINING_FACTS,
    ComponentRecord,
    DatasetRecord,
    FusionRecord,
    MemberRecord,
    ModelRecord,
    PluginRecord,
    Pretrained,
    RecipeRecord,
    RunRecord,
    fields_with_role,
)
from harness.runner import train_resolved
from runs import make_run

BUILT_IN = PluginRecord(name="plugins.models", source="built-in")


def stored_run(**changes) -> ResolvedRun:
    values = dict(dataset="toy", data_root=None, model="resnet101", augmentation="flip", loss="bce", size=448,
                  protocol="wang2019", protocol_hash=WANG2019.hash, epochs=3, batch_size=16, pretrained="imagenet",
                  seed=1, device="auto", precision="auto", skip_missing=False, cache=True, out="/runs", run_id="a-run")
    return ResolvedRun(**{**values, **changes})


@pytest.fixture
def lookups(monkeypatch):
    """Every protocol lookup made through harness.config, by name."""
    names = []
    real = harness.config.get_protocol

    def counted(name):
        names.append(name)
        return real(name)

    monkeypatch.setattr(harness.config, "get_protocol", counted)
    return names


@pytest.mark.slow
def test_a_run_looks_its_protocol_up_once_when_resolved_and_trains_with_what_it_carries(tiny_root, tmp_path, lookups):
    config = RunConfig(plugins=(TINY_PLUGIN,), dataset="tiny", data_root=str(tiny_root), model="tiny-cnn",
                       protocol="smoke", size=32, epochs=1, device="cpu", out=str(tmp_path))
    registry = Registry(config.plugins, watch_torch=True)
    resolved = config.resolve(registry)
    assert lookups == ["smoke"] and resolved.checked_protocol is SMOKE
    assert resolved.rules() == dataclasses.replace(SMOKE, epochs=1)

    record = train_resolved(resolved, registry)

    assert lookups == ["smoke"]  # nothing downstream looked it up again
    assert (record.device, record.precision, record.tf32, record.world_size) == ("cpu", "fp32", False, 1)
    assert (record.protocol.name, record.protocol.version, record.protocol.hash) == ("smoke", SMOKE.version, SMOKE.hash)
    assert record.protocol.deviations == {"epochs": {"protocol": SMOKE.epochs, "used": 1}}
    stored = json.loads((record.path / "run.json").read_text())
    assert set(stored) == {f.name for f in dataclasses.fields(ResolvedRun)} - {
        "checked_protocol", "chosen_device", "chosen_precision"}
    assert (stored["device"], stored["precision"]) == ("cpu", "auto")  # the settings as asked, not as chosen
    assert RunRecord.read(record.path) == record


def test_a_stored_run_carries_its_protocol_once_read(lookups):
    resolved = stored_run()
    again = ResolvedRun.from_dict(json.loads(json.dumps(resolved.to_dict())), "run.json")
    assert again == resolved and again.checked_protocol is WANG2019
    assert "checked_protocol" not in resolved.to_dict() and "chosen_device" not in resolved.to_dict()
    assert lookups == ["wang2019", "wang2019"]
    moved = dataclasses.replace(again, out="/elsewhere", epochs=5)
    assert lookups == ["wang2019", "wang2019"] and moved.rules() == dataclasses.replace(WANG2019, epochs=5)


def test_a_stored_run_of_another_protocol_hash_or_an_unknown_protocol_reads_but_never_trains():
    changed = stored_run(protocol_hash="0" * 16)
    assert changed.checked_protocol is None
    with pytest.raises(UserError, match=f"protocol 'wang2019' had hash {'0' * 16} when the run started, this harness "
                                        f"defines {WANG2019.hash}"):
        changed.rules()
    unknown = stored_run(protocol="gone")
    with pytest.raises(UserError, match="run a-run: unknown protocol 'gone'; known: smoke, wang2019"):
        unknown.deviations("imagenet", ComponentRecord(name="bce", version="1", plugin=BUILT_IN))


def test_the_chosen_device_and_precision_give_tf32():
    resolved = stored_run()
    assert (resolved.chosen_device, resolved.chosen_precision, resolved.tf32) == (None, None, False)
    assert stored_run().with_device("cuda:1", "bf16").tf32 is True
    assert stored_run().with_device("cuda:0", "fp32").tf32 is False
    assert stored_run().with_device("cpu", "fp32").tf32 is False
    assert stored_run().with_device("cuda:1", "bf16") == resolved  # not part of the stored settings


def component(name: str) -> ComponentRecord:
    return ComponentRecord(name=name, version="1", plugin=BUILT_IN)


def test_for_training_builds_the_record_of_a_resolved_run_and_it_round_trips():
    run = stored_run(fingerprint="f" * 16).with_device("cuda:1", "bf16")
    recipe = RecipeRecord(name="sgd-step", version="1", plugin=BUILT_IN, optimizer="SGD", scheduler="StepLR",
                          steps_per_epoch=7)
    dataset = DatasetRecord(name="toy", version="1", plugin=BUILT_IN, fingerprint="f" * 16, train_hash="t",
                            classes=["a", "b", "c"], n_train=10, n_test=5, coverage=1.0)
    model = ModelRecord(name="resnet101", version="1", plugin=BUILT_IN, pretrained=Pretrained(mode="imagenet"),
                        head_prefixes=["fc"])
    deviations = {"epochs": {"protocol": 40, "used": 3}}
    record = RunRecord.for_training(
        run, metrics={"map": 0.5}, dataset=dataset, model=model, augmentation=component("flip"),
        loss=component("bce"), recipe=recipe, deviations=deviations, gpu="H200", world_size=1,
        pipeline={"version": "3"}, plugins=[BUILT_IN], wall_time_s=2.0, train_images_per_s=30.0,
        eval_images_per_s=90.0,
    )
    assert (record.run_id, record.kind, record.size, record.seed) == ("a-run", "train", 448, 1)
    assert (record.device, record.gpu, record.precision, record.tf32) == ("cuda:1", "H200", "bf16", True)
    assert (record.protocol.name, record.protocol.version, record.protocol.hash) == (
        "wang2019", WANG2019.version, WANG2019.hash)
    assert record.protocol.deviations == deviations and record.recipe == recipe and record.model == model
    assert record.environment and record.created
    assert RunRecord.from_json(record.to_json()) == record


def test_for_fusion_keeps_the_shared_training_facts_and_every_plugin_and_round_trips(tmp_path):
    members = [RunRecord.read(make_run(tmp_path, seed=seed)) for seed in (0, 1)]
    fusion_plugin = PluginRecord(name="plugins.fusions", source="built-in")
    fusion = FusionRecord(name="mean", version="1", plugin=fusion_plugin, label="ScaleEn")
    listed = [MemberRecord(run_id=m.run_id, path=f"../{m.run_id}", kind="train", model="resnet101",
                           augmentation="flip", size=448, seed=m.seed, scores_sha256="0" * 64) for m in members]
    record = RunRecord.for_fusion(members, run_id="fused", metrics={"map": 0.7}, fusion=fusion, member_records=listed,
                                  wall_time_s=0.5)
    assert (record.kind, record.run_id, record.fusion, record.members) == ("fusion", "fused", fusion, listed)
    assert record.dataset == members[0].dataset and record.protocol == members[0].protocol
    assert record.seed is None  # the members differ
    assert (record.model, record.size, record.device) == (members[0].model, 448, "cpu")
    assert record.plugins[-1] == fusion_plugin
    assert record.recipe is None and record.train_images_per_s is None
    assert RunRecord.from_json(record.to_json()) == record


def test_every_stored_record_field_has_one_role():
    for spec in dataclasses.fields(RunRecord):
        if spec.metadata.get("stored", True):
            assert spec.metadata.get("role") in ROLES, spec.name
    assert sorted(sum((fields_with_role(role) for role in ROLES), ())) == sorted(
        f.name for f in dataclasses.fields(RunRecord) if f.name != "path")
    with pytest.raises(ValueError, match="unknown role 'hardware'"):
        fields_with_role("hardware")


def test_the_field_lists_derived_from_the_roles_are_the_ones_consumers_used():
    assert VOLATILE_RESULT == ("created", "wall_time_s", "train_images_per_s", "eval_images_per_s")
    assert UNCOMPARED == ("created", "wall_time_s", "train_images_per_s", "eval_images_per_s", "harness_version",
                          "plugins", "environment", "metrics")
    assert SHARED_FIELDS == TRAINING_FACTS == ("model", "augmentation", "loss", "size", "seed", "device", "gpu",
                                               "world_size", "precision", "tf32")
    assert fields_with_role("identity") == ("schema_version", "run_id", "kind", "metrics_version", "metrics")
    assert fields_with_role("machine") == ("harness_version", "plugins", "environment")
