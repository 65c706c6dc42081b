"""The contracts of harness/contracts.py are the ones ``bench check`` and ``bench run`` apply,
and ``bench check`` runs the checks the table of kinds names."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from conftest import TINY_PLUGIN

import harness.check
from harness import contracts, runner
from harness.check import Checklist, check_function, run_checks
from harness.errors import PluginError
from harness.registry import KINDS, Registry


@pytest.fixture(scope="module")
def registry():
    return Registry((TINY_PLUGIN,))


def results(registry, kind, name, data_root=None):
    [checked] = run_checks(registry, [(registry.get(kind, name), name)], data_root)
    return {r.check: r for r in checked}


def sabotage(monkeypatch, function_name):
    """Make ``contracts.<function_name>`` refuse everything, naming itself."""
    def refuse(*args, **kwargs):
        raise PluginError(f"refused by {function_name}")

    monkeypatch.setattr(contracts, function_name, refuse)
    return f"refused by {function_name}"


def test_every_kind_names_a_check_function_that_takes_a_checklist():
    for kind in KINDS.values():
        function = check_function(kind.name)
        assert callable(function) and function.__module__ == f"harness.check.{kind.name}", kind
        assert list(function.__annotations__) == ["checklist", "return"], kind


def test_a_kind_without_a_check_function_fails(monkeypatch):
    monkeypatch.setitem(KINDS, "logger", dataclasses.replace(KINDS["logger"], checks="harness.check.logger:nothing"))
    with pytest.raises(AttributeError, match="nothing"):
        check_function("logger")


def test_run_checks_dispatches_from_the_table(monkeypatch, registry):
    seen = []

    def recording(checklist: Checklist) -> None:
        seen.append((checklist.component.kind, checklist.name))
        checklist.add("recorded", "pass")

    monkeypatch.setattr(harness.check, "recording_checks", recording, raising=False)
    monkeypatch.setitem(KINDS, "model", dataclasses.replace(KINDS["model"], checks="harness.check:recording_checks"))
    checked = results(registry, "model", "tiny-cnn")
    assert seen == [("model", "tiny-cnn")]
    assert list(checked) == ["unique name", "recorded"]


def test_the_logits_contract_is_the_one_check_and_run_apply(monkeypatch, registry):
    message = sabotage(monkeypatch, "check_logits_shape")
    checked = results(registry, "model", "tiny-cnn")
    for check in ("output shape (B, C)", "batch of 1 in eval and train mode"):
        assert checked[check].status == "fail" and checked[check].detail == message
    component = registry.get("model", "tiny-cnn")
    model = component.spec.build(5, False)
    with pytest.raises(PluginError, match=message):
        runner.check_outputs(component, model, torch.zeros(2, 3, 32, 32), 5, torch.device("cpu"))


def test_the_finite_logits_contract_is_the_one_check_and_run_apply(monkeypatch, registry):
    message = sabotage(monkeypatch, "check_logits_finite")
    checked = results(registry, "model", "tiny-cnn")
    assert checked["finite outputs in eval and train mode"].status == "fail"
    assert checked["output shape (B, C)"].status == "pass"
    component = registry.get("model", "tiny-cnn")
    with pytest.raises(PluginError, match=message):
        runner.check_outputs(component, component.spec.build(5, False), torch.zeros(2, 3, 32, 32), 5,
                             torch.device("cpu"))


@pytest.mark.parametrize("function, check", [("check_labels", "labels are int8 N×C of 1, 0, -1"),
                                             ("check_splits", "train and test splits present")])
def test_the_dataset_contract_is_the_one_check_and_run_apply(monkeypatch, registry, tiny_root, function, check):
    message = sabotage(monkeypatch, function)
    checked = results(registry, "dataset", "tiny", tiny_root)
    assert checked[check].status == "fail" and checked[check].detail == message
    with pytest.raises(PluginError, match=message):
        runner.load_dataset(registry.get("dataset", "tiny"), str(tiny_root), skip_missing=False)


@pytest.mark.parametrize("output, message", [
    (torch.zeros(2, 4), "m returned (2, 4) in eval mode; expected (2, 3) logits"),
    ([0.0], "m returned list in eval mode; expected (2, 3) logits"),
    (torch.zeros(2, 3, dtype=torch.int64), "m returned torch.int64 logits in eval mode; logits must be floating point"),
    (torch.tensor([[0.0, float("nan"), 1.0]] * 2), "m returned non-finite logits (nan or inf) in eval mode"),
])
def test_logits_contract_messages(output, message):
    with pytest.raises(PluginError) as refused:
        contracts.check_logits(output, 2, 3, "m", "in eval mode")
    assert str(refused.value) == message


def test_logits_contract_passes_finite_float_logits():
    contracts.check_logits(torch.zeros(2, 3, dtype=torch.bfloat16), 2, 3, "m", "in eval mode")


@pytest.mark.parametrize("labels, message", [
    (np.zeros((2, 3), dtype=np.int64), "s: labels must be an int8 numpy array, got int64"),
    (np.zeros((2, 4), dtype=np.int8), "s: labels must be N×3 (one column per class), got (2, 4)"),
    (np.array([[1, 0, 2], [-1, 0, 3]], dtype=np.int8), "s: label values must be 1, 0 or -1, found [2, 3]"),
])
def test_labels_contract_messages(labels, message):
    with pytest.raises(PluginError) as refused:
        contracts.check_labels(labels, 3, "s")
    assert str(refused.value) == message
    contracts.check_labels(np.array([[1, 0, -1]], dtype=np.int8), 3, "s")


def test_splits_contract_message():
    with pytest.raises(PluginError) as refused:
        contracts.check_splits({"train": None, "val": None}, "dataset 'd'")
    assert str(refused.value) == "dataset 'd': missing split(s) test; has train, val; a benchmark needs train and test"
    contracts.check_splits({"train": None, "test": None}, "dataset 'd'")
