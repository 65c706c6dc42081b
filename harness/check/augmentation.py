"""``bench check`` for augmentations: shapes, target range and determinism on small batches."""

from __future__ import annotations

from harness.check.checklist import Checklist, Problem, seeded

AUGMENT_BATCHES = (4, 1)
AUGMENT_SIZES = (32, 48)
AUGMENT_CLASSES = 5


def check_augmentation(checklist: Checklist) -> None:
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
