"""``bench check`` for models: build with tiny class counts and sizes on the CPU and check the
output contract (``harness.contracts``), modes, head, gradients and seeding."""

from __future__ import annotations

from typing import Any

import numpy as np

from harness import contracts, honesty
from harness.check.checklist import Checklist, Problem, Skip, Warn, seeded
from harness.specs import DatasetInfo
from harness.train import in_head
from harness.weights import no_network

MODEL_CLASSES = (7, 13)  # class counts no real dataset has (VOC 20, COCO 80, NUS 81)
MODEL_SIZES = (64, 96)
MODEL_BATCH = 2
INFO_TRAIN_IMAGES = 64


def synthetic_info(num_classes: int) -> DatasetInfo:
    """A made-up ``DatasetInfo`` of ``num_classes`` classes, for building models that take one."""
    rng = np.random.default_rng(num_classes)
    labels = (rng.random((INFO_TRAIN_IMAGES, num_classes)) < 0.3).astype(np.int8)
    labels[rng.random(labels.shape) < 0.05] = -1
    labels[np.arange(num_classes) % INFO_TRAIN_IMAGES, np.arange(num_classes)] = 1
    labels.flags.writeable = False
    return DatasetInfo(name="check", classes=tuple(f"class{c}" for c in range(num_classes)),
                       fingerprint="0" * 32, train_labels=labels)


def check_model(checklist: Checklist) -> None:
    """Build with ``pretrained=False``; check shapes, modes, head, gradients, the gradient's
    honesty (against the loss ``checklist.loss``), logits rather than probabilities, and seeding."""
    import torch

    component, name = checklist.component, checklist.name
    spec = component.spec
    variant = name.split(":", 1)[1] if ":" in name else None
    if spec.takes_variant and variant is None:
        checklist.add("build", "skip", f"skipped: takes a variant; check one with --component {name}:VARIANT")
        return
    if variant and not spec.takes_variant:
        checklist.add("build", "fail", f"takes no variant; check it as --component {spec.name}")
        return
    extra = {"variant": variant} if variant else {}
    takes_dataset = component.accepts(spec.build, "dataset")
    if component.accepts(spec.build, "size"):
        extra["size"] = MODEL_SIZES[0]

    def build(num_classes: int):
        context = {"dataset": synthetic_info(num_classes)} if takes_dataset else {}
        with seeded(0), no_network():
            model = spec.build(num_classes, False, **extra, **context)
        if not isinstance(model, torch.nn.Module):
            raise Problem(f"build returned {type(model).__name__}, not a torch.nn.Module")
        return model

    inputs = {
        size: torch.randn(MODEL_BATCH, 3, size, size, generator=torch.Generator().manual_seed(size))
        for size in MODEL_SIZES
    }
    small = inputs[MODEL_SIZES[0]]
    built: dict[str, Any] = {}

    def builds() -> None:
        built["model"] = build(MODEL_CLASSES[0])

    signature = f"build(num_classes={MODEL_CLASSES[0]}, pretrained=False{', dataset=DatasetInfo(...)' if takes_dataset else ''})"
    if not checklist.run(signature, builds):
        return
    model = built["model"]

    def same_seed_same_model() -> None:
        twin = build(MODEL_CLASSES[0])
        first, second = _forward(model, small, train=False), _forward(twin, small, train=False)
        if first.shape != second.shape or not torch.allclose(first, second, rtol=1e-5, atol=1e-6, equal_nan=True):
            raise Problem(
                "two builds under the same seed give different eval outputs; draw every random "
                "number from torch, numpy or random's global generators (the run seeds those)"
            )

    def expect_logits(net, images, num_classes: int, train: bool = False) -> None:
        batch, size = images.shape[0], images.shape[-1]
        where = f"in {'train' if train else 'eval'} mode for {batch} images of {size}×{size} and {num_classes} classes"
        contracts.check_logits_shape(_forward(net, images, train=train), batch, num_classes, component.label, where)

    def output_shapes() -> str:
        for size in MODEL_SIZES:
            expect_logits(model, inputs[size], MODEL_CLASSES[0])
        for num_classes in MODEL_CLASSES[1:]:
            expect_logits(build(num_classes), small, num_classes)
        return f"C={', '.join(map(str, MODEL_CLASSES))} at {', '.join(f'{s}×{s}' for s in MODEL_SIZES)}"

    def batch_of_one() -> None:
        for train in (False, True):
            expect_logits(model, small[:1], MODEL_CLASSES[0], train)

    def finite_outputs() -> None:
        for train in (False, True):
            contracts.check_logits_finite(_forward(model, small, train=train), component.label,
                                          f"in {'train' if train else 'eval'} mode")

    def head() -> str:
        prefixes = tuple(getattr(model, "head_prefixes", spec.head_prefixes))
        names = [n for n, p in model.named_parameters() if p.requires_grad]
        if not prefixes:
            raise Problem("head_prefixes is empty: the protocol's head learning rate would train nothing")
        unmatched = [p for p in prefixes if not any(in_head(n, (p,)) for n in names)]
        if unmatched:
            modules = ", ".join(sorted({n.split(".", 1)[0] for n in names}))
            raise Problem(
                f"{', '.join(map(repr, unmatched))} names no module with trainable parameters; "
                f"top-level modules: {modules}"
            )
        head_names = [n for n in names if in_head(n, prefixes)]
        if len(head_names) == len(names):
            raise Problem(f"{prefixes} cover every trainable parameter: the backbone learning rate would train nothing")
        shown = ", ".join(head_names[:6]) + (f", … ({len(head_names) - 6} more)" if len(head_names) > 6 else "")
        return f"{prefixes}: {len(head_names)} of {len(names)} trainable parameter tensors at the head rate: {shown}"

    def backward() -> None:
        model.zero_grad(set_to_none=True)
        _forward(model, small, train=True, grad=True).float().sum().backward()
        trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not trainable:
            raise Problem("the model has no trainable parameters")
        missing = [n for n, p in trainable if p.grad is None]
        if missing:
            raise Problem(
                f"no gradient reaches {len(missing)} of {len(trainable)} trainable parameters "
                f"({', '.join(missing[:3])}{', …' if len(missing) > 3 else ''}); remove unused modules"
            )

    def logits_not_probabilities() -> None:
        outputs = torch.cat([_forward(model, small * scale, train=False) for scale in (1, 10, 100)])
        if honesty.looks_like_probabilities(outputs):
            raise Warn(
                    "warning: every output lies in [0, 1], as probabilities do (a sigmoid at the end?); the harness "
                    "expects logits: threshold metrics read 0 as the decision point and the loss applies the sigmoid"
                )

    def honest_gradients() -> str:
        if tuple(_forward(model, small, train=True).shape) != (MODEL_BATCH, MODEL_CLASSES[0]):
            raise Skip("needs (B, C) outputs; see the output shape check")
        loss = checklist.registry.get("loss", checklist.loss)
        return honesty.check_gradients(component, model, loss, MODEL_CLASSES[0], MODEL_SIZES[0])

    checklist.run("same seed, same model (eval output)", same_seed_same_model)
    checklist.run("output shape (B, C)", output_shapes)
    checklist.run("batch of 1 in eval and train mode", batch_of_one)
    checklist.run("finite outputs in eval and train mode", finite_outputs)
    checklist.run("outputs are logits, not probabilities", logits_not_probabilities)
    checklist.run("head_prefixes match some, not all, parameters", head)
    checklist.run("backward reaches every trainable parameter", backward)
    checklist.run("gradients agree with the loss (finite-difference check)", honest_gradients)


def _forward(model, images, *, train: bool, grad: bool = False):
    import torch

    model.train(train)
    with torch.set_grad_enabled(grad):
        output = model(images)
    if not isinstance(output, torch.Tensor):
        raise Problem(f"forward returned {type(output).__name__}, not a (B, C) tensor of logits")
    return output
