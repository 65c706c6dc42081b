"""``bench check`` for fusions: shape, order invariance and rankings on small score arrays."""

from __future__ import annotations

import numpy as np

from harness.check.checklist import Checklist, Problem

FUSION_SHAPE = (12, 5)


def check_fusion(checklist: Checklist) -> None:
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
