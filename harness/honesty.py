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
2×2×2 values in its last stage is ill-conditioned); the gradient scaled by 0.97 through an
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
CHECK_SIZE = 64
CHECK_BATCH = 2


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


def check_gradients(model_component, model, loss_component, num_classes: int, size: int) -> str:
    """Refuse (one ``PluginError`` line naming the model) a model whose parameter gradients
    disagree with the loss; returns a one-line summary of what was measured."""
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
    raise failures[-1]


def looks_like_probabilities(outputs) -> bool:
    """Whether model outputs all lie in [0, 1] and are not constant: a sign of a sigmoid or
    softmax at the end, which threshold metrics would misread as logits. Give it outputs for
    inputs at several scales (×1, ×10, ×100): logits leave [0, 1] as the inputs grow,
    probabilities cannot."""
    import torch

    values = outputs.detach().float()
    return bool(torch.isfinite(values).all() and values.min() >= 0 and values.max() <= 1 and values.std() > 0)
