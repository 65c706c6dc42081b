"""Checks that a model does only what its spec says, run by ``bench check`` and ``bench run``.

A model maps images to logits; the trainer owns the loss and the gradient. Two ways to cheat
that contract leave the forward values alone and rewrite the gradient instead: a hook on the
output tensor, or a custom autograd function at the output (ASL's gradient smuggled into a
"BCE" run). Both make the parameter gradients disagree with the derivative of the loss the
run records, which a directional finite difference measures:

    g = ∇θ L(θ)  (autograd, as training computes it),   d = g / |g|
    analytic = g · d = |g|,   numeric = (L(θ + εd) − L(θ − εd)) / 2ε

For an honest model the relative error ``|analytic − numeric| / max(|analytic|, |numeric|)``
shrinks with the step ε (it is the finite difference's own error: curvature, which batch
norm on a tiny batch makes large, and the ReLU or max-pool kinks the step crosses) until
rounding takes over; for a rewritten gradient it stays at the size of the change, whatever
ε. So the check takes the smallest error over several steps and compares it with a
tolerance that honest models stay well below. Measured in float64 on 2 images of 64×64:
smallcnn, ResNet-18, ResNet-50 and VGG16 ≤ 3e-8; ResNet-101 1e-4–3e-4 (batch norm over
2×2×2 values in its last stage is ill-conditioned; at 32 px, over 2 values, it failed), so
the check now always uses 4 images of 64×64 (ResNet-101 6e-8, ResNet-50 9e-9, VGG16 2e-10,
timm resnet18 4e-5); the gradient scaled by 0.97 through an
output hook 2e-2–3e-2; a swapped loss gradient (ASL's instead of BCE's) far more. What it
measures is the gradient's component along itself: a rewrite that adds a part orthogonal to
the true gradient shows only quadratically (a 9% orthogonal addition gives about 8e-3, under
the tolerance), and a model written to recognise the check (float64 on the CPU) can pass it.
It stops the hooks and autograd functions that swap in another loss's gradient; the record,
the leaderboard's re-runs and the code stored with each submission cover the rest. It runs
on a copy of the model, on the CPU, with dropout drawn alike in every pass. A model that
cannot run in float64 is checked in float32, where finite differences are much noisier
(honest deep ResNets fail there), so such a model is refused unless it passes: make it run
in float64 on the CPU.
"""

from __future__ import annotations

import copy
import math

from harness.errors import PluginError

# (steps ε, tolerance) per precision; float32 is used only when a model cannot run in float64.
STEPS = {"float64": ((1e-7, 1e-8, 1e-9), 1e-2), "float32": ((1e-2, 1e-3, 1e-4), 5e-2)}
# The check's inputs, whatever the run's size: at 32 px the last stage of a deep ResNet sees
# 1×1 maps, and batch norm over 2 values there makes an honest ResNet-101 fail (relative
# error 1); 4 images of 64×64 give it 6e-8 (measured, float64). A model that cannot take
# 64×64 inputs (a ViT with a fixed size) is checked at the run's size instead.
CHECK_SIZE = 64
CHECK_BATCH = 4


def gradient_error(model, loss, images, targets, dtype_name: str, seed: int = 0) -> float:
    """The smallest relative error, over the precision's steps, between autograd's and a
    finite difference's directional derivative of ``loss(model(images), targets)`` along the
    autograd gradient (see the module docstring)."""
    import torch

    dtype = getattr(torch, dtype_name)
    probe = copy.deepcopy(model).to(dtype=dtype, device="cpu").train()
    parameters = [p for p in probe.parameters() if p.requires_grad]
    images, targets = images.to(dtype), targets.to(dtype)

    def value():
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return loss(probe(images), targets)

    grads = torch.autograd.grad(value(), parameters, allow_unused=True)
    pairs = [(p, g) for p, g in zip(parameters, grads) if g is not None]
    norm = math.sqrt(sum(float((g * g).sum()) for _, g in pairs))
    if norm == 0.0:
        return 0.0
    original = [p.detach().clone() for p, _ in pairs]

    def loss_at(offset: float) -> float:
        with torch.no_grad():
            for (p, g), start in zip(pairs, original):
                p.copy_(start + g * (offset / norm))
        return float(value().detach())

    errors = []
    for step in STEPS[dtype_name][0]:
        numeric = (loss_at(step) - loss_at(-step)) / (2 * step)
        errors.append(abs(norm - numeric) / max(abs(norm), abs(numeric), 1e-12))
    return min(errors)


class CannotRun(PluginError):
    """The model's forward or backward raised in both precisions (at that input size)."""


def loss_gradient_error(loss, logits, targets, dtype_name: str) -> float:
    """The relative error of a loss's own gradient with respect to the logits, measured as
    ``gradient_error`` measures a model's: the loss alone, on fixed logits."""
    import torch

    dtype = getattr(torch, dtype_name)
    logits, targets = logits.to(dtype).clone().requires_grad_(True), targets.to(dtype)
    value = loss(logits, targets)
    if not value.requires_grad:  # no gradient at all: nothing to disagree with (bench check reports it)
        return 0.0
    (grad,) = torch.autograd.grad(value, [logits], allow_unused=True)
    norm = 0.0 if grad is None else float(grad.norm())
    if norm == 0.0:
        return 0.0
    errors = []
    with torch.no_grad():
        for step in STEPS[dtype_name][0]:
            numeric = (float(loss(logits + grad * (step / norm), targets))
                       - float(loss(logits - grad * (step / norm), targets))) / (2 * step)
            errors.append(abs(norm - numeric) / max(abs(norm), abs(numeric), 1e-12))
    return min(errors)


def check_loss_gradient(loss_component, num_classes: int) -> str:
    """Refuse (one ``PluginError`` line naming the loss) a loss whose gradient is not the
    derivative of its value: a term computed without gradient (``.detach()``, ``torch.no_grad``,
    ASL's ``disable_torch_grad_focal_loss``) makes training follow another function than the
    one the run records. Checked apart from the model, so a model is never blamed for it."""
    import torch

    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(CHECK_BATCH, num_classes, generator=generator) * 3
    targets = (torch.rand(CHECK_BATCH, num_classes, generator=generator) < 0.4).float()

    def loss(values, labels):
        return loss_component.call("loss", loss_component.spec.loss, values, labels)

    failures = []
    for dtype_name in STEPS:
        try:
            with loss_component.guard(f"gradient in {dtype_name} (gradient check)"):
                error = loss_gradient_error(loss, logits, targets, dtype_name)
        except PluginError as failure:
            failures.append(failure)
            continue
        tolerance = STEPS[dtype_name][1]
        if error > tolerance:
            raise PluginError(
                f"{loss_component.label}: its gradient is not the derivative of its value (relative error {error:.2g} > "
                f"{tolerance:g}, {dtype_name}), as when a term is computed without gradient (.detach(), torch.no_grad(), "
                "ASL's disable_torch_grad_focal_loss=True); compute every term with its gradient"
            )
        return f"relative error {error:.1e} ≤ {tolerance:g} ({dtype_name}, {CHECK_BATCH}×{num_classes} logits)"
    raise failures[-1]


def check_gradients(model_component, model, loss_component, num_classes: int, size: int) -> str:
    """Refuse (one ``PluginError`` line naming the model) a model whose parameter gradients
    disagree with the loss, once the loss's own gradient passed ``check_loss_gradient`` (or
    that line, naming the loss); returns a one-line summary of what was measured. The
    check runs on ``CHECK_BATCH`` images of ``CHECK_SIZE`` px, or of ``size`` px (the run's)
    for a model that cannot take ``CHECK_SIZE``."""
    check_loss_gradient(loss_component, num_classes)
    try:
        return _check_model_gradients(model_component, model, loss_component, num_classes, CHECK_SIZE)
    except CannotRun:
        if size == CHECK_SIZE:
            raise
        return _check_model_gradients(model_component, model, loss_component, num_classes, size)


def _check_model_gradients(model_component, model, loss_component, num_classes: int, size: int) -> str:
    import torch

    generator = torch.Generator().manual_seed(0)
    images = torch.randn(CHECK_BATCH, 3, size, size, generator=generator)
    targets = (torch.rand(CHECK_BATCH, num_classes, generator=generator) < 0.4).float()

    def loss(logits, labels):
        return loss_component.call("loss", loss_component.spec.loss, logits, labels)

    failures = []
    for dtype_name in STEPS:
        try:
            with model_component.guard(f"forward/backward in {dtype_name} (gradient check)"):
                error = gradient_error(model, loss, images, targets, dtype_name)
        except PluginError as failure:
            failures.append(failure)
            continue
        tolerance = STEPS[dtype_name][1]
        if error > tolerance:
            fallback = "" if dtype_name == "float64" else f" (it could not run in float64: {failures[-1]})"
            raise PluginError(
                f"{model_component.label}: its parameter gradients disagree with the {loss_component.name} loss "
                f"(relative error {error:.2g} > {tolerance:g}, {dtype_name}){fallback}; a model must not rewrite the "
                "gradient its outputs pass back (no hooks on the output, no custom autograd function at the output)"
            )
        return f"relative error {error:.1e} ≤ {tolerance:g} ({dtype_name}, {CHECK_BATCH} images of {size}×{size})"
    raise CannotRun(str(failures[-1])) from failures[-1]


def looks_like_probabilities(outputs) -> bool:
    """Whether model outputs all lie in [0, 1] and are not constant: a sign of a sigmoid or
    softmax at the end, which threshold metrics would misread as logits. Give it outputs for
    inputs at several scales (×1, ×10, ×100): logits leave [0, 1] as the inputs grow,
    probabilities cannot."""
    import torch

    values = outputs.detach().float()
    return bool(torch.isfinite(values).all() and values.min() >= 0 and values.max() <= 1 and values.std() > 0)
