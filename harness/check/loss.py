"""``bench check`` for losses: a finite scalar mean with the gradient of its value."""

from __future__ import annotations

from harness import honesty
from harness.check.checklist import Checklist, Problem, Skip, Warn

LOSS_SHAPE = (4, 6)


def check_loss(checklist: Checklist) -> None:
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
