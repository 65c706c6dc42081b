"""``bench check``: every check passes a conforming component and catches its violation."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

from harness.cli import main

COMPONENTS = textwrap.dedent(
    '''
    import itertools
    from pathlib import Path

    import numpy as np
    import torch

    from harness import AugmentationSpec, Dataset, DatasetInfo, DatasetSpec, FusionSpec, LossSpec, ModelSpec, Split, hookimpl
    from harness.errors import UserError

    IMAGES = Path(__file__).parent / "images"


    class Tiny(torch.nn.Module):
        def __init__(self, num_classes, extra_columns=0, spare=False):
            super().__init__()
            self.features = torch.nn.Conv2d(3, 4, 3, stride=2)
            self.head = torch.nn.Linear(4, num_classes + extra_columns)
            self.spare = torch.nn.Linear(2, 2) if spare else None

        def forward(self, x):
            return self.head(self.features(x).mean(dim=(2, 3)))


    class NaN(Tiny):
        def forward(self, x):
            return super().forward(x) * float("nan")


    def unseeded_init(num_classes, pretrained):
        model = Tiny(num_classes)
        model.head.weight.data = torch.from_numpy(np.random.default_rng().random((num_classes, 4), dtype=np.float32))
        return model


    def batchnorm_head(num_classes, pretrained):
        model = Tiny(num_classes)
        model.head = torch.nn.Sequential(torch.nn.Linear(4, num_classes), torch.nn.BatchNorm1d(num_classes))
        return model


    def boom(num_classes, pretrained):
        raise RuntimeError("boom: no such layer")


    def sized(num_classes, pretrained, variant):
        return Tiny(num_classes, extra_columns=int(variant))


    class GradientHook(Tiny):
        """Leaves the logits alone and halves the gradient they pass back."""

        def forward(self, x):
            logits = super().forward(x)
            if logits.requires_grad:
                logits.register_hook(lambda grad: grad * 0.5)
            return logits


    class Rescale(torch.autograd.Function):
        @staticmethod
        def forward(ctx, logits):
            return logits.clone()

        @staticmethod
        def backward(ctx, grad):
            return grad * torch.sigmoid(grad)


    class AutogradSwap(Tiny):
        def forward(self, x):
            return Rescale.apply(super().forward(x))


    class Sigmoid(Tiny):
        def forward(self, x):
            return torch.sigmoid(super().forward(x))


    SEEN = {}


    def graph_head(num_classes, pretrained, dataset=None):
        """Initialises its head from label co-occurrence in the training labels it is given."""
        assert isinstance(dataset, DatasetInfo) and len(dataset.classes) == num_classes
        SEEN["info"] = dataset
        model = Tiny(num_classes)
        positives = (dataset.train_labels != 0).astype(np.float32)
        cooccurrence = positives.T @ positives / max(len(positives), 1)
        model.head.bias.data = torch.from_numpy(np.diag(cooccurrence).copy())
        return model


    MODELS = {
        "tiny": (lambda num_classes, pretrained: Tiny(num_classes), ("head",)),
        "too-wide": (lambda num_classes, pretrained: Tiny(num_classes, extra_columns=1), ("head",)),
        "spare-layer": (lambda num_classes, pretrained: Tiny(num_classes, spare=True), ("head",)),
        "nan": (lambda num_classes, pretrained: NaN(num_classes), ("head",)),
        "unseeded-init": (unseeded_init, ("head",)),
        "batchnorm-head": (batchnorm_head, ("head",)),
        "wrong-prefix": (lambda num_classes, pretrained: Tiny(num_classes), ("fc",)),
        "all-head": (lambda num_classes, pretrained: Tiny(num_classes), ("head", "features")),
        "no-head": (lambda num_classes, pretrained: Tiny(num_classes), ()),
        "boom": (boom, ("head",)),
        "grad-hook": (lambda num_classes, pretrained: GradientHook(num_classes), ("head",)),
        "autograd-swap": (lambda num_classes, pretrained: AutogradSwap(num_classes), ("head",)),
        "sigmoid-out": (lambda num_classes, pretrained: Sigmoid(num_classes), ("head",)),
        "graph-head": (graph_head, ("head",)),
        "resnet18": (lambda num_classes, pretrained: Tiny(num_classes), ("head",)),
    }


    def focal(logits, targets):
        p = torch.sigmoid(logits)
        weight = torch.where(targets > 0, 1 - p, p) ** 2
        return (weight * torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")).mean()


    def detached_focal(logits, targets):
        """ASL's disable_torch_grad_focal_loss: the focal weight computed without gradient."""
        p = torch.sigmoid(logits)
        with torch.no_grad():
            weight = torch.where(targets > 0, 1 - p, p) ** 2
        return (weight * torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")).mean()


    LOSSES = {
        "focal": focal,
        "detached-focal": detached_focal,
        "summed": lambda logits, targets: torch.nn.functional.binary_cross_entropy_with_logits(
            logits, targets, reduction="sum"),
        "per-element": lambda logits, targets: (logits - targets) ** 2,
        "naive-bce": lambda logits, targets: -(targets * torch.log(torch.sigmoid(logits))
                                               + (1 - targets) * torch.log(1 - torch.sigmoid(logits))).mean(),
        "constant": lambda logits, targets: torch.tensor(1.0),
    }


    def split(prefix, count, classes, labels=None, ids=None):
        IMAGES.mkdir(exist_ok=True)
        ids = ids or [f"{prefix}{i}" for i in range(count)]
        for image_id in ids:
            (IMAGES / f"{image_id}.png").touch()
        labels = labels if labels is not None else np.tile(np.array([1, 0, -1], dtype=np.int8)[:classes], (count, 1))
        return Split(ids=ids, image_paths=[IMAGES / f"{i}.png" for i in ids], labels=labels)


    def dataset(classes=("a", "b", "c"), **splits):
        splits = splits or {"train": split("tr", 4, len(classes)), "test": split("te", 3, len(classes))}
        return Dataset(name="d", classes=classes, splits=splits)


    def needs_root(data_root, options):
        if data_root is None:
            raise UserError("dataset 'needs-root' needs --data-root")
        return dataset()


    LOADS = itertools.count()


    def unstable(data_root, options):
        shift = next(LOADS) % 4
        return dataset(train=split("tr", 4, 3, ids=[f"tr{(i + shift) % 4}" for i in range(4)]), test=split("te", 3, 3))


    DATASETS = {
        "good-data": lambda data_root, options: dataset(),
        "needs-root": needs_root,
        "bad-values": lambda data_root, options: dataset(
            train=split("tr", 2, 3, labels=np.array([[1, 0, 2], [0, 1, 1]], dtype=np.int8)), test=split("te", 2, 3)
        ),
        "wide-labels": lambda data_root, options: dataset(
            train=split("tr", 2, 3, labels=np.ones((2, 4), dtype=np.int8)), test=split("te", 2, 3)
        ),
        "int64-labels": lambda data_root, options: dataset(
            train=split("tr", 2, 3, labels=np.ones((2, 3), dtype=np.int64)), test=split("te", 2, 3)
        ),
        "repeated-ids": lambda data_root, options: dataset(
            train=split("tr", 2, 3, ids=["x", "x"]), test=split("te", 2, 3)
        ),
        "leaky": lambda data_root, options: dataset(
            train=split("tr", 2, 3, ids=["a1", "shared"]), test=split("te", 2, 3, ids=["shared", "b1"])
        ),
        "no-test": lambda data_root, options: dataset(train=split("tr", 2, 3)),
        "twin-classes": lambda data_root, options: dataset(
            classes=("a", "a", "b"), train=split("tr", 2, 3), test=split("te", 2, 3)
        ),
        "unstable": unstable,
    }


    AUGMENTATIONS = {
        "coin-flip": lambda images, targets, epoch, generator: (
            torch.where(torch.rand(len(images), generator=generator)[:, None, None, None] < 0.5, images.flip(-1), images),
            targets,
        ),
        "global-rng": lambda images, targets, epoch, generator: (images * torch.rand(len(images))[:, None, None, None], targets),
        "drops-one": lambda images, targets, epoch, generator: (images[1:], targets[1:]),
        "doubles-targets": lambda images, targets, epoch, generator: (images, targets * 2),
    }


    def sigmoid(x):
        return 1 / (1 + np.exp(-x))


    FUSIONS = {
        "average-logits": lambda arrays: np.mean(arrays, axis=0),
        "probabilities": lambda arrays: np.mean([sigmoid(a) for a in arrays], axis=0),
        "first-counts-twice": lambda arrays: (2 * arrays[0] + sum(arrays[1:])) / (len(arrays) + 1),
        "transposed": lambda arrays: np.mean(arrays, axis=0).T,
    }


    @hookimpl
    def register_models(register):
        for name, (build, head) in MODELS.items():
            register(ModelSpec(name=name, build=build, head_prefixes=head))
        register(ModelSpec(name="sized", build=sized, head_prefixes=("head",), takes_variant=True))


    @hookimpl
    def register_datasets(register):
        for name, load in DATASETS.items():
            register(DatasetSpec(name=name, load=load))


    @hookimpl
    def register_augmentations(register):
        for name, augment in AUGMENTATIONS.items():
            register(AugmentationSpec(name=name, augment=augment))


    @hookimpl
    def register_fusions(register):
        for name, fuse in FUSIONS.items():
            register(FusionSpec(name=name, fuse=fuse))


    @hookimpl
    def register_losses(register):
        for name, loss in LOSSES.items():
            register(LossSpec(name=name, loss=loss))
    '''
)

CHECKS = {
    "model": [
        "unique name",
        "build(num_classes=7, pretrained=False)",
        "same seed, same model (eval output)",
        "output shape (B, C)",
        "batch of 1 in eval and train mode",
        "finite outputs in eval and train mode",
        "outputs are logits, not probabilities",
        "head_prefixes match some, not all, parameters",
        "backward reaches every trainable parameter",
        "gradients agree with the loss (finite-difference check)",
    ],
    "loss": [
        "unique name",
        "returns a finite scalar",
        "gradient reaches the logits",
        "gradient is the derivative of the value (finite-difference check)",
        "a mean, not a sum, over images and classes",
        "finite for saturated logits",
        "same inputs, same value",
    ],
    "dataset": [
        "unique name",
        "load(data_root, options)",
        "unique, non-empty class names",
        "train and test splits present",
        "labels are int8 N×C of 1, 0, -1",
        "unique image ids, disjoint train and test",
        "first and last image file of each split exist",
        "stable fingerprint (loaded twice)",
    ],
    "augmentation": [
        "unique name",
        "keeps batch size and shapes",
        "targets stay in [0, 1]",
        "same generator seed, same output",
    ],
    "fusion": [
        "unique name",
        "output N×C, finite",
        "order of runs does not matter",
        "fuse([a, a]) ranks and thresholds like a",
    ],
}

# (component, check) -> a fragment of what the failure says
EXPECTED_FAILURES = {
    ("too-wide", "output shape (B, C)"): "returned (2, 8) in eval mode for 2 images of 64×64 and 7 classes; expected (2, 7) logits",
    ("too-wide", "batch of 1 in eval and train mode"): "returned (1, 8) in eval mode for 1 images of 64×64 and 7 classes; expected (1, 7) logits",
    ("spare-layer", "backward reaches every trainable parameter"): "no gradient reaches 2 of 6 trainable parameters (spare.weight, spare.bias)",
    ("nan", "finite outputs in eval and train mode"): "non-finite logits",
    ("unseeded-init", "same seed, same model (eval output)"): "different eval outputs",
    ("batchnorm-head", "batch of 1 in eval and train mode"): "raised ValueError: Expected more than 1 value per channel",
    ("wrong-prefix", "head_prefixes match some, not all, parameters"): "'fc' names no module with trainable parameters; top-level modules: features, head",
    ("all-head", "head_prefixes match some, not all, parameters"): "('head', 'features') cover every trainable parameter",
    ("no-head", "head_prefixes match some, not all, parameters"): "head_prefixes is empty",
    ("boom", "build(num_classes=7, pretrained=False)"): "raised RuntimeError: boom: no such layer",
    ("bad-values", "labels are int8 N×C of 1, 0, -1"): "split train: label values must be 1, 0 or -1, found [2]",
    ("wide-labels", "labels are int8 N×C of 1, 0, -1"): "split train: labels must be N×3 (one column per class), got (2, 4)",
    ("int64-labels", "labels are int8 N×C of 1, 0, -1"): "must be an int8 numpy array, got int64",
    ("repeated-ids", "unique image ids, disjoint train and test"): "split train: 1 image id(s) appear more than once, e.g. x",
    ("leaky", "unique image ids, disjoint train and test"): "dataset 'leaky': 1 image id(s) are in both train and test, first 'shared'; a test image seen in training",
    ("no-test", "train and test splits present"): "missing split(s) test; has train",
    ("twin-classes", "unique, non-empty class names"): "repeated class names: a",
    ("unstable", "stable fingerprint (loaded twice)"): "loading twice gives fingerprints",
    ("global-rng", "same generator seed, same output"): "draw every random number from the generator argument",
    ("drops-one", "keeps batch size and shapes"): "images (3, 3, 32, 32) and targets (3, 5), expected (4, 3, 32, 32) and (4, 5)",
    ("doubles-targets", "targets stay in [0, 1]"): "targets left [0, 1], e.g. 2",
    ("probabilities", "fuse([a, a]) ranks and thresholds like a"): "fused scores must be logits",
    ("grad-hook", "gradients agree with the loss (finite-difference check)"): "disagree with the bce loss",
    ("autograd-swap", "gradients agree with the loss (finite-difference check)"): "must not rewrite the gradient",
    ("resnet18", "unique name"): "model 'resnet18' shadows the built-in model of that name",
    ("per-element", "returns a finite scalar"): "loss returned (4, 6); it must return a scalar tensor",
    ("naive-bce", "finite for saturated logits"): "non-finite loss for logits of ±40",
    ("constant", "gradient reaches the logits"): "no finite, non-zero gradient reaches the logits",
    ("detached-focal", "gradient is the derivative of the value (finite-difference check)"):
        "loss 'detached-focal' (plugin '{plugin}'): its gradient is not the derivative of its value (relative error",
    ("first-counts-twice", "order of runs does not matter"): "the order of runs must not matter",
    ("transposed", "output N×C, finite"): "fusing 2 arrays of (12, 5) gave (5, 12)",
    ("transposed", "fuse([a, a]) ranks and thresholds like a"): "fuse([a, a]) ranks differently from a within a class",
}

EXPECTED_SKIPS = {("needs-root", "load(data_root, options)"), ("sized", "build"),
                  ("too-wide", "gradients agree with the loss (finite-difference check)"),
                  ("no-test", "stable fingerprint (loaded twice)"), ("per-element", "gradient reaches the logits"),
                  ("per-element", "finite for saturated logits"), ("per-element", "same inputs, same value"),
                  ("per-element", "gradient is the derivative of the value (finite-difference check)"),
                  ("per-element", "a mean, not a sum, over images and classes")}
EXPECTED_WARNINGS = {("sigmoid-out", "outputs are logits, not probabilities"): "warning: every output lies in [0, 1]",
                     ("summed", "a mean, not a sum, over images and classes"):
                         "warning: the value grows with B·C (×4.0 on 4× the logits), as a sum does"}


@pytest.fixture(scope="module")
def plugin_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("components") / "components.py"
    path.write_text(COMPONENTS)
    return path


def bench(*args):
    return CliRunner().invoke(main, list(map(str, args)))


@pytest.fixture(scope="module")
def report(plugin_file):
    result = bench("check", "--plugin", plugin_file, "--json")
    return result, {(r["component"], r["check"]): r for r in json.loads(result.stdout)}


def test_every_violation_fails_exactly_its_check(report):
    result, records = report
    assert result.exit_code == 1
    for (component, check), record in records.items():
        expected = EXPECTED_FAILURES.get((component, check))
        if expected:
            assert record["status"] == "fail", (component, check, record)
            assert expected.format(plugin=record["plugin"]) in record["detail"], (component, check, record["detail"])
        elif (component, check) in EXPECTED_WARNINGS:
            assert record["status"] == "warn" and EXPECTED_WARNINGS[component, check] in record["detail"], record
        else:
            status = "skip" if (component, check) in EXPECTED_SKIPS else "pass"
            assert record["status"] == status, (component, check, record)
    assert set(EXPECTED_FAILURES) <= set(records)


def test_conforming_components_get_the_whole_checklist(report):
    _, records = report
    for kind, component in [("model", "tiny"), ("model", "graph-head"), ("dataset", "good-data"),
                            ("augmentation", "coin-flip"), ("loss", "focal"), ("fusion", "average-logits")]:
        expected = CHECKS[kind]
        if component == "graph-head":
            expected = [c.replace("pretrained=False)", "pretrained=False, dataset=DatasetInfo(...))") for c in expected]
        assert [check for (name, check) in records if name == component] == expected
        assert [records[component, check]["status"] for check in expected] == ["pass"] * len(expected)


def test_a_failed_build_or_load_ends_that_checklist(report):
    _, records = report
    assert [check for (name, check) in records if name == "boom"] == CHECKS["model"][:2]
    assert [check for (name, check) in records if name == "needs-root"] == CHECKS["dataset"][:2]


def test_dataset_needing_a_root_is_skipped_without_one_and_checked_with_one(report, plugin_file, tmp_path):
    _, records = report
    skipped = records["needs-root", "load(data_root, options)"]
    assert skipped["status"] == "skip"
    assert skipped["detail"].startswith("skipped: needs --data-root")
    result = bench("check", "--plugin", plugin_file, "--component", "needs-root", "--data-root", tmp_path)
    assert result.exit_code == 0, result.output
    assert "8 passed, 0 failed, 0 skipped" in result.stdout


def test_sigmoid_output_warns_without_failing(plugin_file):
    result = bench("check", "--plugin", plugin_file, "--component", "sigmoid-out")
    assert result.exit_code == 0, result.output
    warning = [line for line in result.stdout.splitlines() if line.startswith("  ! ")]
    assert len(warning) == 1 and "warning" in warning[0] and "probabilities" in warning[0]
    assert result.stdout.splitlines()[-1] == "9 passed, 0 failed, 1 warning(s), 0 skipped"


def test_a_model_that_asks_for_the_dataset_gets_a_synthetic_train_split_only(plugin_file):
    from harness.registry import Registry

    result = bench("check", "--plugin", plugin_file, "--component", "graph-head")
    assert result.exit_code == 0, result.output
    assert "build(num_classes=7, pretrained=False, dataset=DatasetInfo(...))" in result.stdout
    component = Registry([str(plugin_file)]).get("model", "graph-head")
    info = component.plugin.module.SEEN["info"]
    assert set(vars(info)) == {"name", "classes", "fingerprint", "train_labels"}
    assert info.train_labels.dtype == np.int8 and not info.train_labels.flags.writeable


def test_text_checklist_and_one_line_error(plugin_file):
    result = bench("check", "--plugin", plugin_file, "--component", "tiny", "--component", "too-wide")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == f"model tiny (plugin {plugin_file})"
    assert "  ✓ output shape (B, C): C=7, 13 at 64×64, 96×96" in lines
    assert f"model too-wide (plugin {plugin_file})" in lines
    assert any(line.startswith("  ✗ output shape (B, C): model 'too-wide'") and line.endswith("expected (2, 7) logits")
               for line in lines)
    assert lines[-1] == "17 passed, 2 failed, 1 skipped"
    assert result.stderr == (
        "Error: 2 check(s) failed (model too-wide: output shape (B, C); "
        "model too-wide: batch of 1 in eval and train mode)\n"
    )
    assert "Traceback" not in result.output


def test_variant_components(plugin_file):
    skipped = bench("check", "--plugin", plugin_file, "--component", "sized", "--json")
    assert skipped.exit_code == 0
    assert json.loads(skipped.stdout)[-1]["detail"] == "skipped: takes a variant; check one with --component sized:VARIANT"
    with_variant = bench("check", "--plugin", plugin_file, "--component", "sized:0", "--component", "sized:1", "--json")
    records = json.loads(with_variant.stdout)
    shape = {r["component"]: r for r in records if r["check"] == "output shape (B, C)"}
    assert shape["sized:0"]["status"] == "pass"
    assert shape["sized:1"]["status"] == "fail"
    variant_of_plain = bench("check", "--plugin", plugin_file, "--component", "tiny:big", "--json")
    assert json.loads(variant_of_plain.stdout)[-1]["detail"] == "takes no variant; check it as --component tiny"


def test_unknown_component_lists_what_can_be_checked(plugin_file):
    result = bench("check", "--plugin", plugin_file, "--component", "tinyy")
    assert result.exit_code == 1
    assert f"Error: no component 'tinyy' in plugin(s) {plugin_file}; checkable components: all-head," in result.stderr


def test_head_count_agrees_with_the_trainer(report, plugin_file):
    from harness.protocol import get_protocol
    from harness.registry import Registry
    from harness.train import parameter_groups

    _, records = report
    model = Registry([str(plugin_file)]).get("model", "tiny").spec.build(7, False)
    head, backbone = (len(group["params"]) for group in parameter_groups(model, ("head",), get_protocol("smoke"), "tiny"))
    detail = records["tiny", "head_prefixes match some, not all, parameters"]["detail"]
    assert detail == f"('head',): {head} of {head + backbone} trainable parameter tensors at the head rate: head.weight, head.bias"
