"""``bench check``: a conformance suite for the components a plugin registers.

Every component gets a short checklist of its contract (``harness/specs.py``), run on the
CPU with tiny inputs so the whole suite takes seconds. Each check catches whatever the
component raises and reports it in one line, so one broken component never hides the rest.
"""

from __future__ import annotations

import random
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from harness import honesty
from harness.data import fingerprint
from harness.errors import PluginError, UserError, one_line
from harness.registry import KINDS, Component, Registry
from harness.specs import Dataset, DatasetInfo
from harness.train import in_head, seed_everything
from harness.weights import no_network

MODEL_CLASSES = (7, 13)  # class counts no real dataset has (VOC 20, COCO 80, NUS 81)
MODEL_SIZES = (64, 96)
MODEL_BATCH = 2
AUGMENT_BATCHES = (4, 1)
AUGMENT_SIZES = (32, 48)
AUGMENT_CLASSES = 5
FUSION_SHAPE = (12, 5)
LOSS_SHAPE = (4, 6)
INFO_TRAIN_IMAGES = 64


@dataclass(frozen=True)
class CheckResult:
    """One line of the checklist."""

    kind: str
    component: str
    plugin: str
    check: str
    status: str  # "pass", "fail", "warn" (passes, with something to look at) or "skip"
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


class Problem(Exception):
    """A broken contract; the message says what is wrong."""


class Skip(Exception):
    """A check that cannot run here; the message says what it needs."""


class Warn(Exception):
    """A check that passes with a warning; the message starts with ``warning:``."""


class _Checklist:
    """Runs the checks of one component and records a ``CheckResult`` per check."""

    def __init__(self, component: Component, name: str):
        self.component = component
        self.name = name
        self.results: list[CheckResult] = []

    def run(self, check: str, function: Callable[[], str | None]) -> bool:
        """Run ``function`` (returning an optional detail); True when it passed."""
        try:
            detail, status = function() or "", "pass"
        except Skip as skip:
            detail, status = f"skipped: {skip}", "skip"
        except Warn as warning:
            detail, status = str(warning), "warn"
        except (Problem, PluginError) as problem:
            detail, status = str(problem), "fail"
        except (Exception, SystemExit, KeyboardInterrupt) as error:  # the component's own failure, reported
            detail, status = one_line(error) if isinstance(error, (SystemExit, KeyboardInterrupt)) else f"raised {one_line(error)}", "fail"
        self.add(check, status, detail)
        return status in ("pass", "warn")

    def add(self, check: str, status: str, detail: str = "") -> None:
        self.results.append(
            CheckResult(self.component.kind, self.name, self.component.plugin.name, check, status, detail)
        )


def select(registry: Registry, plugins: Iterable[str], names: Iterable[str]) -> list[tuple[Component, str]]:
    """The components to check, as (component, name to check it under).

    With ``plugins``, only what those plugins registered; with ``names``, only those
    components (``NAME:VARIANT`` picks the variant of a component that takes one).
    """
    registry.check_requested()
    plugins, names = tuple(plugins), tuple(names)
    requested = [p for p in registry.plugins if p.requested]
    for plugin in requested:
        if not plugin.components:
            raise UserError(
                f"plugin {plugin.name!r} registered no components: its register_* hooks must call "
                f"register(...) with a spec (see CONTRIBUTING.md)"
            )
    pool = [c for p in requested for c in p.components] if plugins else [
        c for kind in KINDS for c in registry.components(kind)
    ]
    order = list(KINDS)
    pool.sort(key=lambda c: (order.index(c.kind), c.name))
    if not names:
        return [(c, c.name) for c in pool]
    chosen = []
    for name in names:
        found = [(c, name) for c in pool if c.name == name.split(":", 1)[0]]
        if not found:
            where = f"plugin(s) {', '.join(plugins)}" if plugins else "any loaded plugin"
            known = ", ".join(sorted({c.name for c in pool})) or "none"
            raise UserError(f"no component {name!r} in {where}; checkable components: {known}")
        chosen += found
    return chosen


def run_checks(
    registry: Registry, selected: list[tuple[Component, str]], data_root: Path | None = None, loss: str = "bce"
) -> Iterator[list[CheckResult]]:
    """Check each selected component in turn, yielding its results as soon as it is done;
    models' gradients are checked against loss ``loss``."""
    for component, name in selected:
        checklist = _Checklist(component, name)
        checklist.run("unique name", lambda: _unique_name(registry, component))
        if component.kind == "model":
            check_model(checklist, name, registry, loss)
        elif component.kind == "dataset":
            check_dataset(checklist, data_root)
        elif component.kind == "augmentation":
            check_augmentation(checklist)
        elif component.kind == "loss":
            check_loss(checklist)
        elif component.kind == "recipe":
            check_recipe(checklist)
        elif component.kind == "logger":
            check_logger(checklist)
        else:
            check_fusion(checklist)
        yield checklist.results


def _unique_name(registry: Registry, component: Component) -> None:
    others = [c for c in registry.components(component.kind) if c.name == component.name and c is not component]
    if others:
        builtin = [c for c in others if c.plugin.source == "built-in"]
        if builtin and component.plugin.source != "built-in":
            raise Problem(
                f"{component.kind} {component.name!r} shadows the built-in {component.kind} of that name "
                f"(plugin {builtin[0].plugin.name!r}); every command that uses the name would fail: rename yours"
            )
        where = ", ".join(repr(c.plugin.name) for c in others)
        raise Problem(
            f"{component.kind} {component.name!r} is also registered by plugin {where}; rename one"
        )


# -- models --------------------------------------------------------------------------------


def synthetic_info(num_classes: int) -> DatasetInfo:
    """A made-up ``DatasetInfo`` of ``num_classes`` classes, for building models that take one."""
    rng = np.random.default_rng(num_classes)
    labels = (rng.random((INFO_TRAIN_IMAGES, num_classes)) < 0.3).astype(np.int8)
    labels[rng.random(labels.shape) < 0.05] = -1
    labels[np.arange(num_classes) % INFO_TRAIN_IMAGES, np.arange(num_classes)] = 1
    labels.flags.writeable = False
    return DatasetInfo(name="check", classes=tuple(f"class{c}" for c in range(num_classes)),
                       fingerprint="0" * 32, train_labels=labels)


def check_model(checklist: _Checklist, name: str, registry: Registry, loss_name: str = "bce") -> None:
    """Build with ``pretrained=False``; check shapes, modes, head, gradients, the gradient's
    honesty, logits rather than probabilities, and seeding."""
    import torch

    component = checklist.component
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

    def output_shapes() -> str:
        for size in MODEL_SIZES:
            _expect_logits(_forward(model, inputs[size], train=False), MODEL_BATCH, MODEL_CLASSES[0], size)
        for num_classes in MODEL_CLASSES[1:]:
            _expect_logits(_forward(build(num_classes), small, train=False), MODEL_BATCH, num_classes, small.shape[-1])
        return f"C={', '.join(map(str, MODEL_CLASSES))} at {', '.join(f'{s}×{s}' for s in MODEL_SIZES)}"

    def batch_of_one() -> None:
        for train in (False, True):
            _expect_logits(_forward(model, small[:1], train=train), 1, MODEL_CLASSES[0], small.shape[-1], train)

    def finite_outputs() -> None:
        for train in (False, True):
            if not torch.isfinite(_forward(model, small, train=train)).all():
                raise Problem(f"non-finite logits (nan or inf) in {'train' if train else 'eval'} mode")

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
        loss = registry.get("loss", loss_name)
        return honesty.check_gradients(component, model, loss, MODEL_CLASSES[0], MODEL_SIZES[0])

    checklist.run("same seed, same model (eval output)", same_seed_same_model)
    checklist.run("output shape (B, C)", output_shapes)
    checklist.run("batch of 1 in eval and train mode", batch_of_one)
    checklist.run("finite outputs in eval and train mode", finite_outputs)
    checklist.run("outputs are logits, not probabilities", logits_not_probabilities)
    checklist.run("head_prefixes match some, not all, parameters", head)
    checklist.run("backward reaches every trainable parameter", backward)
    checklist.run("gradients agree with the loss (finite-difference check)", honest_gradients)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed python, numpy and torch as ``bench run`` does, and restore their states after."""
    import torch

    states = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    try:
        seed_everything(seed)
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.random.set_rng_state(states[2])


def _forward(model, images, *, train: bool, grad: bool = False):
    import torch

    model.train(train)
    with torch.set_grad_enabled(grad):
        output = model(images)
    if not isinstance(output, torch.Tensor):
        raise Problem(f"forward returned {type(output).__name__}, not a (B, C) tensor of logits")
    return output


def _expect_logits(output, batch: int, num_classes: int, size: int, train: bool = False) -> None:
    if tuple(output.shape) != (batch, num_classes):
        mode = "train" if train else "eval"
        raise Problem(
            f"expected ({batch}, {num_classes}) for {batch} images of {size}×{size} and "
            f"{num_classes} classes in {mode} mode, got {tuple(output.shape)}"
        )
    if not output.is_floating_point():
        raise Problem(f"logits must be floating point, got {output.dtype}")


# -- datasets ------------------------------------------------------------------------------


def check_dataset(checklist: _Checklist, data_root: Path | None) -> None:
    """Load twice; check classes, splits, label encoding, ids and the fingerprint."""
    spec = checklist.component.spec
    loaded: dict[str, Dataset] = {}

    def load() -> Dataset:
        dataset = spec.load(data_root, {})
        if not isinstance(dataset, Dataset):
            raise Problem(f"load returned {type(dataset).__name__}, not a harness.Dataset")
        return dataset

    def loads() -> str:
        try:
            loaded["dataset"] = load()
        except UserError as error:
            if data_root is None:
                raise Skip(f"needs --data-root ({error})") from None
            raise
        dataset = loaded["dataset"]
        return ", ".join(f"{name} {len(split)}" for name, split in sorted(dataset.splits.items()))

    if not checklist.run("load(data_root, options)", loads):
        return
    dataset = loaded["dataset"]

    def class_names() -> str:
        classes = list(dataset.classes)
        if not classes:
            raise Problem("no class names")
        bad = [c for c in classes if not isinstance(c, str) or not c.strip()]
        if bad:
            raise Problem(f"class names must be non-empty strings, got {bad[:3]!r}")
        repeated = sorted(c for c, n in Counter(classes).items() if n > 1)
        if repeated:
            raise Problem(f"repeated class names: {', '.join(repeated)}")
        return f"{len(classes)} classes"

    def splits() -> None:
        missing = [s for s in ("train", "test") if s not in dataset.splits]
        if missing:
            raise Problem(f"missing split(s) {', '.join(missing)}; has {', '.join(sorted(dataset.splits)) or 'none'}")
        empty = [s for s, split in dataset.splits.items() if len(split) == 0]
        if empty:
            raise Problem(f"empty split(s): {', '.join(empty)}")

    def labels() -> None:
        expected = len(dataset.classes)
        for name, split in sorted(dataset.splits.items()):
            matrix = split.labels
            if not isinstance(matrix, np.ndarray) or matrix.dtype != np.int8:
                raise Problem(f"split {name}: labels must be an int8 numpy array, got {getattr(matrix, 'dtype', type(matrix).__name__)}")
            if matrix.ndim != 2 or matrix.shape[1] != expected:
                raise Problem(f"split {name}: labels must be N×{expected} (one column per class), got {matrix.shape}")
            values = set(np.unique(matrix).tolist()) - {1, 0, -1}
            if values:
                raise Problem(f"split {name}: label values must be 1, 0 or -1, found {sorted(values)}")

    def unique_ids() -> None:
        for name, split in sorted(dataset.splits.items()):
            repeated = sorted(i for i, n in Counter(map(str, split.ids)).items() if n > 1)
            if repeated:
                raise Problem(f"split {name}: {len(repeated)} image id(s) appear more than once, e.g. {repeated[0]}")
        if {"train", "test"} <= dataset.splits.keys():
            shared = set(map(str, dataset.splits["train"].ids)) & set(map(str, dataset.splits["test"].ids))
            if shared:
                raise Problem(f"train and test share {len(shared)} image id(s), e.g. {sorted(shared)[0]}")

    def image_files() -> None:
        for name, split in sorted(dataset.splits.items()):
            ends = (split.image_paths[0], split.image_paths[-1]) if len(split) else ()
            for path in map(Path, ends):
                if not path.is_file():
                    raise Problem(f"split {name}: image file {path} does not exist")

    def stable_fingerprint() -> str:
        if not {"train", "test"} <= dataset.splits.keys():
            raise Skip("needs train and test splits")
        first, second = fingerprint(dataset), fingerprint(load())
        if first != second:
            raise Problem(f"loading twice gives fingerprints {first} and {second}; fix the order of ids and classes")
        return first

    checklist.run("unique, non-empty class names", class_names)
    checklist.run("train and test splits present", splits)
    checklist.run("labels are int8 N×C of 1, 0, -1", labels)
    checklist.run("unique image ids, disjoint train and test", unique_ids)
    checklist.run("first and last image file of each split exist", image_files)
    checklist.run("stable fingerprint (loaded twice)", stable_fingerprint)


# -- augmentations -------------------------------------------------------------------------


def check_augmentation(checklist: _Checklist) -> None:
    """Apply to small batches; check shapes, target range and determinism under a seed."""
    import torch

    augment = checklist.component.spec.augment
    if augment is None:
        checklist.add("augment", "skip", "skipped: no augment function; the core does the input pipeline's crop and flip")
        return

    def batch(size: int, count: int):
        generator = torch.Generator().manual_seed(size * 10 + count)
        images = torch.rand(count, 3, size, size, generator=generator)
        targets = (torch.rand(count, AUGMENT_CLASSES, generator=generator) < 0.4).float()
        return images, targets

    def apply(size: int, count: int, epoch: int, seed: int, global_seed: int = 0):
        images, targets = batch(size, count)
        with seeded(global_seed):
            output = augment(images, targets, epoch, torch.Generator().manual_seed(seed))
        if not (isinstance(output, tuple) and len(output) == 2 and all(isinstance(t, torch.Tensor) for t in output)):
            raise Problem("augment must return a pair of tensors (images, targets)")
        return output

    cases = [(size, count, epoch) for size in AUGMENT_SIZES for count in AUGMENT_BATCHES for epoch in (0, 1)]

    def shapes() -> str:
        for size, count, epoch in cases:
            images, targets = apply(size, count, epoch, seed=1)
            expected = ((count, 3, size, size), (count, AUGMENT_CLASSES))
            if (tuple(images.shape), tuple(targets.shape)) != expected:
                raise Problem(
                    f"epoch {epoch}: images {tuple(images.shape)} and targets {tuple(targets.shape)}, "
                    f"expected {expected[0]} and {expected[1]} (batch size and size S kept)"
                )
        return f"batch {', '.join(map(str, AUGMENT_BATCHES))}, S={', '.join(map(str, AUGMENT_SIZES))}, epochs 0 and 1"

    def target_range() -> None:
        for size, count, epoch in cases:
            _, targets = apply(size, count, epoch, seed=2)
            outside = ~torch.isfinite(targets) | (targets < 0) | (targets > 1)
            if outside.any():
                raise Problem(f"epoch {epoch}: targets left [0, 1], e.g. {targets[outside][0].item():g}")

    def deterministic() -> None:
        for epoch in (0, 1):
            first = apply(AUGMENT_SIZES[0], AUGMENT_BATCHES[0], epoch, seed=3, global_seed=0)
            second = apply(AUGMENT_SIZES[0], AUGMENT_BATCHES[0], epoch, seed=3, global_seed=1)
            if not all(torch.equal(a, b) for a, b in zip(first, second)):
                raise Problem(
                    f"epoch {epoch}: the same generator seed gave different outputs; draw every "
                    f"random number from the generator argument, not torch's global one"
                )

    checklist.run("keeps batch size and shapes", shapes)
    checklist.run("targets stay in [0, 1]", target_range)
    checklist.run("same generator seed, same output", deterministic)


# -- losses --------------------------------------------------------------------------------


def check_loss(checklist: _Checklist) -> None:
    """Call on small float32 batches: a finite scalar, gradients for the logits, determinism."""
    import torch

    loss = checklist.component.spec.loss
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(*LOSS_SHAPE, generator=generator) * 3
    targets = (torch.rand(*LOSS_SHAPE, generator=generator) < 0.4).float()

    def scalar() -> str:
        value = loss(logits.clone(), targets.clone())
        if not isinstance(value, torch.Tensor) or value.ndim != 0:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise Problem(f"loss returned {shape}; it must return a scalar tensor")
        if not value.is_floating_point() or not torch.isfinite(value):
            raise Problem(f"loss returned {value.item() if value.numel() == 1 else value}; it must be a finite float")
        return f"{value.item():.4f} on {LOSS_SHAPE[0]}×{LOSS_SHAPE[1]} logits"

    def scalar_value(value):
        if not isinstance(value, torch.Tensor) or value.ndim != 0:
            raise Skip("needs a scalar loss")
        return value

    def gradient() -> None:
        inputs = logits.clone().requires_grad_(True)
        value = scalar_value(loss(inputs, targets))
        if value.requires_grad:
            value.backward()
        if inputs.grad is None or not torch.isfinite(inputs.grad).all() or not inputs.grad.abs().sum() > 0:
            raise Problem("no finite, non-zero gradient reaches the logits")

    def extremes() -> None:
        saturated = torch.tensor([[40.0, -40.0, 0.0]] * 2)
        value = scalar_value(loss(saturated, torch.tensor([[1.0, 0.0, 1.0]] * 2)))
        if not torch.isfinite(value):
            raise Problem("non-finite loss for logits of ±40; compute it from logits stably (log-sigmoid)")

    def deterministic() -> None:
        if not torch.equal(scalar_value(loss(logits.clone(), targets.clone())), loss(logits.clone(), targets.clone())):
            raise Problem("two calls on the same inputs differ; a loss draws no random numbers")

    def own_gradient() -> str:
        scalar_value(loss(logits.clone(), targets.clone()))
        return honesty.check_loss_gradient(checklist.component, LOSS_SHAPE[1])

    def a_mean() -> str:
        """The value on the logits repeated to twice the images and twice the classes: a mean
        stays the same, a sum grows 4×."""
        small = float(scalar_value(loss(logits.clone(), targets.clone())))
        large = float(scalar_value(loss(logits.repeat(2, 2), targets.repeat(2, 2))))
        ratio = large / small if small else 1.0
        if ratio > 2:
            raise Warn(f"warning: the value grows with B·C (×{ratio:.1f} on 4× the logits), as a sum does; the "
                       "protocol's learning rates assume a mean over images and classes: divide by logits.numel()")
        return f"×{ratio:.2f} on 4× the logits"

    checklist.run("returns a finite scalar", scalar)
    checklist.run("gradient reaches the logits", gradient)
    checklist.run("gradient is the derivative of the value (finite-difference check)", own_gradient)
    checklist.run("a mean, not a sum, over images and classes", a_mean)
    checklist.run("finite for saturated logits", extremes)
    checklist.run("same inputs, same value", deterministic)


# -- recipes -------------------------------------------------------------------------------

RECIPE_PROTOCOL = "wang2019"
RECIPE_STEPS = 3


def check_recipe(checklist: _Checklist) -> None:
    """Make the optimizer and schedule for the wang2019 protocol on placeholder groups and step
    them through every epoch: finite rates, and the same rates when made again."""
    from harness import recipes
    from harness.protocol import get_protocol

    protocol = get_protocol(RECIPE_PROTOCOL)
    component = checklist.component
    made: list = []

    def builds() -> str:
        plan, scheduler = recipes.planned(component, protocol, RECIPE_STEPS, protocol.epochs)
        made.append(plan)
        ema = component.spec.ema_decay
        return (f"{plan[0]['class']}, schedule {scheduler or 'none'}, EMA {ema if ema is not None else 'none'}, "
                f"{len(plan[0]['param_groups'])} param groups")

    def finite_rates() -> str:
        if not made:
            raise Skip("needs an optimizer")
        rates = [group["lr"] for epoch in made[0] for group in epoch["param_groups"]]
        bad = [rate for rate in rates if not isinstance(rate, (int, float)) or not np.isfinite(rate) or rate < 0]
        if bad:
            raise Problem(f"learning rate {bad[0]!r} over {protocol.epochs} epochs of {RECIPE_STEPS} steps; rates are "
                          "finite and not negative")
        return f"rates from {max(rates):.3g} to {min(rates):.3g} over {protocol.epochs} epochs of {RECIPE_STEPS} steps"

    def repeatable() -> None:
        if not made:
            raise Skip("needs an optimizer")
        again, _ = recipes.planned(component, protocol, RECIPE_STEPS, protocol.epochs)
        found = recipes.difference(again, made[0], "param_groups")
        if found:
            raise Problem(f"made twice, the recipe differs: {found}; a recipe's rates depend only on the protocol "
                          "and the step (bench leaderboard submit recomputes them)")

    checklist.run(f"makes an optimizer for the {RECIPE_PROTOCOL} groups", builds)
    checklist.run("finite learning rates at every step", finite_rates)
    checklist.run("made again, the same hyperparameters", repeatable)


# -- fusions -------------------------------------------------------------------------------


def check_fusion(checklist: _Checklist) -> None:
    """Fuse small score arrays; check shape, order invariance and that self-fusion keeps rankings."""
    fuse = checklist.component.spec.fuse
    rng = np.random.default_rng(0)
    a, b, c = (rng.normal(0, 2, FUSION_SHAPE).astype(np.float32) for _ in range(3))

    def fused(arrays: list[np.ndarray]) -> np.ndarray:
        output = fuse([x.copy() for x in arrays])
        if not isinstance(output, np.ndarray):
            raise Problem(f"fuse returned {type(output).__name__}, not a numpy array")
        return output

    def shape() -> None:
        for arrays in ([a, b], [a, b, c]):
            output = fused(arrays)
            if output.shape != FUSION_SHAPE:
                raise Problem(f"fusing {len(arrays)} arrays of {FUSION_SHAPE} gave {output.shape}")
            if not np.isfinite(output).all():
                raise Problem("non-finite fused scores")

    def order_invariant() -> None:
        if not np.allclose(fused([a, b, c]), fused([c, a, b]), rtol=1e-5, atol=1e-6):
            raise Problem("fuse([a, b, c]) differs from fuse([c, a, b]); the order of runs must not matter")

    def self_fusion() -> None:
        output = fused([a, a])
        for axis, what in ((0, "class"), (1, "image")):
            if not np.array_equal(np.argsort(output, axis=axis), np.argsort(a, axis=axis)):
                raise Problem(f"fuse([a, a]) ranks differently from a within a {what}")
        if not np.array_equal(output > 0, a > 0):
            raise Problem("fuse([a, a]) > 0 differs from a > 0: fused scores must be logits (threshold 0)")

    checklist.run("output N×C, finite", shape)
    checklist.run("order of runs does not matter", order_invariant)
    checklist.run("fuse([a, a]) ranks and thresholds like a", self_fusion)


# -- loggers -------------------------------------------------------------------------------


def check_logger(checklist: _Checklist) -> None:
    """A logger is opened only by a run (it may write to a server); here its ``open`` must be callable."""

    def callable_open() -> None:
        if not callable(checklist.component.spec.open):
            raise Problem(f"open is {type(checklist.component.spec.open).__name__}, not callable")

    checklist.run("open is callable (a logger is opened only by a run)", callable_open)
