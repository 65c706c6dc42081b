"""Built-in score fusions (paper §3.3: ``S_fusion = (1/m) Σ S_i``).

The paper does not say whether it averaged logits or sigmoid probabilities, so both are
offered under their own names (PROTOCOL.md, "Ensembles"); ``mean`` is the default.
"""

from __future__ import annotations

import numpy as np

from harness import FusionSpec, hookimpl


def _stack(logits: list[np.ndarray]) -> np.ndarray:
    return np.stack([np.asarray(s, dtype=np.float64) for s in logits])


def mean_probability(logits: list[np.ndarray]) -> np.ndarray:
    """``logit(mean_i sigmoid(x_i))``, computed in log space so that it is exact and finite.

    With ``p = mean σ(x_i)`` and ``1 - p = mean σ(-x_i)``, the fused logit is
    ``log Σ σ(x_i) - log Σ σ(-x_i)``, and ``log σ(x) = -log(1 + e^-x)`` is evaluated with
    ``logaddexp``. Neither sum can underflow to 0 nor round to 1 the way ``p`` does in
    floating point, so no clipping is needed: the result lies within the inputs' range
    (plus ``log m``) and keeps the order of ``p`` even where ``p`` itself would round
    to 0 or 1 and create ties.
    """
    x = _stack(logits)
    log_p = np.logaddexp.reduce(-np.logaddexp(0.0, -x), axis=0)
    log_q = np.logaddexp.reduce(-np.logaddexp(0.0, x), axis=0)
    return log_p - log_q


def mean_logits(logits: list[np.ndarray]) -> np.ndarray:
    """The plain mean of the logits."""
    return _stack(logits).mean(axis=0)


@hookimpl
def register_fusions(register) -> None:
    register(
        FusionSpec(
            name="mean",
            fuse=mean_probability,
            version="1",
            description="mean of sigmoid probabilities, returned as logits (exact, log space)",
        )
    )
    register(
        FusionSpec(
            name="mean-logits",
            fuse=mean_logits,
            version="1",
            description="mean of logits",
        )
    )
