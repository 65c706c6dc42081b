"""Tests a plugin author would ship: the graph and the GCN by hand, the weights path, `bench check`,
and a real `bench run` that shows which labels the graph was built from.

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

import mlgcn_plugin
from harness import DatasetInfo
from harness.cli import main
from harness.data import compose, split_hash
from harness.errors import UserError

# 5 images × 4 classes; image 1's class 1 is ignored (-1), which counts as present.
LABELS = np.array([
    [1, 1, 0, 0],
    [1, -1, 0, 0],
    [1, 0, 1, 0],
    [0, 1, 1, 0],
    [1, 0, 0, 0],
], dtype=np.int8)


def info(labels=LABELS):
    classes = tuple(f"c{i}" for i in range(labels.shape[1]))
    return DatasetInfo(name="hand", classes=classes, fingerprint="f" * 32, train_labels=labels)


def test_conditional_probabilities_by_hand():
    # n_0 = 4, n_1 = 3 (the -1 counts), n_2 = 2, n_3 = 0; n_01 = 2, n_02 = 1, n_12 = 1.
    expected = [
        [1, 2 / 4, 1 / 4, 0],
        [2 / 3, 1, 1 / 3, 0],
        [1 / 2, 1 / 2, 1, 0],
        [0, 0, 0, 0],  # class 3 never present
    ]
    assert np.allclose(mlgcn_plugin.conditional_probabilities(LABELS), expected)


def test_correlation_matrix_by_hand():
    # τ = 0.4 keeps 0→1 (1/2), 1→0 (2/3), 2→0 and 2→1 (1/2 each); p = 0.2 splits over the
    # kept edges of each row, 1 − p stays on the diagonal; class 3 has only its self-loop.
    expected = [
        [0.8, 0.2, 0, 0],
        [0.2, 0.8, 0, 0],
        [0.1, 0.1, 0.8, 0],
        [0, 0, 0, 0.8],
    ]
    assert np.allclose(mlgcn_plugin.correlation_matrix(LABELS), expected)
    # were the ignored label absent, n_1 = 2 and n_01 = 1: P(L_1 | L_0) = 1/4 < τ, no edge 0→1
    absent = mlgcn_plugin.correlation_matrix(np.where(LABELS < 0, 0, LABELS))
    assert absent[0].tolist() == [0.8, 0, 0, 0]
    # p = 0.5, τ = 0.6: only 1→0 (2/3) survives
    assert np.allclose(mlgcn_plugin.correlation_matrix(LABELS, tau=0.6, p=0.5),
                       [[0.5, 0, 0, 0], [0.5, 0.5, 0, 0], [0, 0, 0.5, 0], [0, 0, 0, 0.5]])


def test_normalized_adjacency_by_hand():
    # row sums 2 and 4: Â_ij = A_ij / sqrt(d_i d_j)
    adjacency = mlgcn_plugin.normalized_adjacency(np.array([[1.0, 1.0], [0.0, 4.0]]))
    assert np.allclose(adjacency, [[1 / 2, 1 / math.sqrt(8)], [0, 1]])


def test_graph_convolution_by_hand():
    adjacency = torch.tensor([[0.8, 0.2], [0.5, 0.5]])
    nodes = torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, 1.0]])
    layer = torch.nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 2.0, -1.0], [0.0, 1.0, 0.0]]))
    # H W = [[-1, 0], [1, 1]]; Â H W = [[-0.8 + 0.2, 0.2], [-0.5 + 0.5, 0.5]]
    output = mlgcn_plugin.graph_convolution(adjacency, nodes, layer)
    assert torch.allclose(output, torch.tensor([[-0.6, 0.2], [0.0, 0.5]]))


def test_logits_are_max_pooled_features_times_the_gcn_classifiers():
    torch.manual_seed(0)
    model = mlgcn_plugin.build(4, False, info(), backbone="resnet18").eval()
    adjacency = torch.tensor([[0.8, 0.2, 0, 0], [0.2, 0.8, 0, 0], [0.1, 0.1, 0.8, 0], [0, 0, 0, 1.0]])
    assert torch.allclose(model.adjacency, adjacency)  # D = diag(1, 1, 1, 0.8) rescales only class 3
    w1, w2 = model.gcn[0].weight.T, model.gcn[1].weight.T
    assert w1.shape == (300, 1024) and w2.shape == (1024, 512)
    classifiers = adjacency @ F.leaky_relu(adjacency @ model.embeddings @ w1, 0.2) @ w2
    images = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        features = model.backbone(images).amax(dim=(2, 3))
        logits = model(images)
    assert logits.shape == (3, 4)
    assert torch.allclose(logits, features @ classifiers.T, atol=1e-4)


def test_label_embeddings_depend_on_the_class_name_only():
    vectors = mlgcn_plugin.label_embeddings(["dog", "circle"])
    assert vectors.shape == (2, 300) and vectors.dtype == np.float32
    assert np.array_equal(vectors[1], mlgcn_plugin.label_embeddings(["circle"])[0])
    # the first values of sha256-seeded RandomState streams: a numpy that changed them would change every model
    assert vectors[0, :3].tolist() == pytest.approx([-0.75147295, 1.81648242, -0.12789397])
    assert vectors[1, :3].tolist() == pytest.approx([-0.89284283, -0.75412101, 0.76636517])


def test_build_needs_the_training_labels_of_as_many_classes():
    with pytest.raises(UserError, match="training labels"):
        mlgcn_plugin.build(4, False, backbone="resnet18")
    with pytest.raises(UserError, match="5 classes asked for"):
        mlgcn_plugin.build(5, False, info(), backbone="resnet18")


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
        model = mlgcn_plugin.build(4, True, info(), backbone="resnet18")
    assert torch.equal(model.backbone[0].weight, reference.conv1.weight)
    assert torch.equal(model.backbone[7][1].conv2.weight, reference.layer4[1].conv2.weight)
    assert [f["expected_name"] for f in record.files] == ["resnet18-f37072fd.pth"]


def test_plugin_is_installed_under_its_entry_point():
    result = CliRunner().invoke(main, ["plugins", "--json"])
    (plugin,) = [p for p in json.loads(result.stdout) if p["name"] == "mlgcn"]
    assert plugin["source"] == "distribution"
    assert (plugin["distribution"], plugin["distribution_version"]) == ("multilabel-bench-mlgcn", mlgcn_plugin.__version__)
    assert [c["name"] for c in plugin["components"]] == ["mlgcn-resnet18", "mlgcn-resnet50", "mlgcn-resnet101"]


def test_bench_check_passes_with_a_synthetic_dataset_info():
    result = CliRunner().invoke(main, ["check", "--plugin", "mlgcn", "--component", "mlgcn-resnet18"])
    assert result.exit_code == 0, result.output
    assert "✓ build(num_classes=7, pretrained=False, dataset=DatasetInfo(...))" in result.stdout
    assert "✗" not in result.stdout
    assert re.fullmatch(r"\d+ passed, 0 failed, 0 skipped", result.stdout.splitlines()[-1])


def test_bench_run_builds_the_graph_from_exactly_the_train_labels(manifest, tmp_path, monkeypatch):
    path, declared = manifest
    received = []
    original = mlgcn_plugin.build

    def recording_build(num_classes, pretrained, dataset=None, *, backbone):
        received.append(dataset)
        return original(num_classes, pretrained, dataset, backbone=backbone)

    monkeypatch.setattr(mlgcn_plugin, "build", recording_build)  # register_models reads it when bench run loads plugins
    result = CliRunner().invoke(main, [
        "run", "--dataset", "manifest", "--data-root", str(path), "--model", "mlgcn-resnet18", "--epochs", "1",
        "--size", "32", "--device", "cpu", "--no-cache", "--quiet", "--out", str(tmp_path), "--run-id", "mlgcn",
    ])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "mlgcn" / "result.json").read_text())

    from harness.registry import Registry

    loaded = Registry().get("dataset", "manifest").spec.load(path, {})
    train, test = loaded.splits["train"], loaded.splits["test"]
    (given,) = received
    assert given.train_labels.dtype == np.int8 and not given.train_labels.flags.writeable
    assert np.array_equal(given.train_labels, train.labels)
    assert np.array_equal(given.train_labels, declared["train"])  # what the manifest says, -1 included
    assert (given.train_labels == -1).sum() == 8
    assert given.classes == tuple(loaded.classes)
    fingerprint = compose(loaded.classes, split_hash(train.ids, train.labels), split_hash(test.ids, test.labels))
    assert given.fingerprint == record["dataset"]["fingerprint"] == fingerprint

    model = record["model"]
    assert model["context"]["train_labels"] == {"shape": [40, 10], "split_hash": split_hash(train.ids, train.labels)}
    assert model["context"]["fingerprint"] == fingerprint
    assert (model["backbone"], model["head_prefixes"]) == ("resnet18", ["gcn"])
    state = torch.load(tmp_path / "mlgcn" / "model.pt", weights_only=True)
    graph = mlgcn_plugin.normalized_adjacency(mlgcn_plugin.correlation_matrix(declared["train"]))
    assert torch.allclose(state["adjacency"], torch.from_numpy(graph).float())
