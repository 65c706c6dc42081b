"""Checks that a model does only what its spec says, run by ``bench check`` and ``bench run``.

A model maps images to logits; the trainer owns the loss and the gradient. Two ways to cheat
that contract leave the forward values alone and rewrite the gradient instead: a hook on the
output tensor, or a custom autograd function at the output (ASL's gradient smuggled into a
"BCE" run). Both make the parameter gradients disagree with the derivative of the loss the
run records, which a directional finite difference measures:

    g = ∇θ L(θ)  (autograd, as training computes it),   d = g / |g|
    analytic = g · d = |g|,   numeric = (L(θ + εd) − L(θ − εd)) / 2ε

An honest model gives ``|analytic − numeric| / max(|analytic|, |numeric|)`` near 0 (in
float64: rounding ~1e-10, ReLU or max-pool kinks crossed by the tiny step ~1e-7); a
rewritten gradient gives a difference of the order of the change it made. The check runs on
a copy of the model, on the CPU, on a small batch, with dropout drawn alike in every pass.
"""

from __future__ import annotations

import copy
import math

from harness.errors import PluginError

# (step ε, tolerance) per precision; float32 is used only when a model cannot run in float64.
STEPS = {"float64": (1e-5, 1e-3), "float32": (1e-2, 5e-2)}
CHECK_SIZE = 64
CHECK_BATCH = 2


def gradient_error(model, loss, images, targets, dtype_name: str, seed: int = 0) -> float:
    """The relative error between autograd's and a finite difference's directional derivative
    of ``loss(model(images), targets)`` along the autograd gradient (see the module docstring)."""
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
    step, _ = STEPS[dtype_name]
    with torch.no_grad():
        for p, g in pairs:
            p.add_(g, alpha=step / norm)
    plus = float(value().detach())
    with torch.no_grad():
        for p, g in pairs:
            p.add_(g, alpha=-2 * step / norm)
    minus = float(value().detach())
    numeric = (plus - minus) / (2 * step)
    return abs(norm - numeric) / max(abs(norm), abs(numeric), 1e-12)


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
            raise PluginError(
                f"{model_component.label}: its parameter gradients disagree with the {loss_component.name} loss "
                f"(relative error {error:.2g} > {tolerance:g}, {dtype_name}); a model must not rewrite the gradient "
                "its outputs pass back (no hooks on the output, no custom autograd function at the output)"
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
