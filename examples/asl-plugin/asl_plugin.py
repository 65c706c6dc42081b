"""The asymmetric loss (ASL) for multilabel-bench, trained with ``bench run --loss asl``.

Ridnik, Ben-Baruch, Zamir, Noy, Friedman, Protter & Zelnik-Manor, "Asymmetric Loss For
Multi-Label Classification", ICCV 2021. With p = σ(x) and the shifted probability
p_m = max(p − m, 0), each (image, class) pair contributes

    L = −[ y (1 − p)^γ+ log p + (1 − y) p_m^γ− log(1 − p_m) ]

Positives and negatives are focused separately (γ− > γ+ down-weights the many easy
negatives), and the margin m discards negatives with p ≤ m entirely. Defaults are the
paper's: γ+ = 0, γ− = 4, m = 0.05.

Reduction: the mean over classes and images, like the protocol's ``bce``, where the paper
sums. Under a protocol's fixed learning rates the sum would scale every step by B·C (320 on
VOC at batch 16), so the mean is what keeps ASL comparable with the BCE baseline; with
γ+ = γ− = 0 and m = 0 it is exactly that baseline.
"""

from __future__ import annotations

from harness import LossSpec, hookimpl

__version__ = "0.1.0"

GAMMA_POS = 0.0
GAMMA_NEG = 4.0
MARGIN = 0.05


def asymmetric_loss(logits, targets, gamma_pos: float = GAMMA_POS, gamma_neg: float = GAMMA_NEG,
                    margin: float = MARGIN):
    """Mean over (B, C) of ASL; stable for saturated logits.

    log p = logsigmoid(x) and 1 − p = σ(−x) never subtract nearly equal numbers. For m > 0,
    1 − p_m = min(σ(−x) + m, 1) ≥ m, so its log stays finite; for m = 0 it is logsigmoid(−x).
    """
    import torch
    import torch.nn.functional as F

    positive = torch.sigmoid(-logits).pow(gamma_pos) * F.logsigmoid(logits)
    if margin > 0:
        shifted = (torch.sigmoid(logits) - margin).clamp(min=0)
        log_not_shifted = torch.log((torch.sigmoid(-logits) + margin).clamp(max=1))
    else:
        shifted = torch.sigmoid(logits)
        log_not_shifted = F.logsigmoid(-logits)
    negative = shifted.pow(gamma_neg) * log_not_shifted
    return -(targets * positive + (1 - targets) * negative).mean()


@hookimpl
def register_losses(register):
    register(
        LossSpec(
            name="asl",
            loss=asymmetric_loss,
            version="1",
            description=f"asymmetric loss (Ridnik et al. 2021), γ+={GAMMA_POS:g}, γ−={GAMMA_NEG:g}, m={MARGIN:g}, "
                        "mean over classes and images",
        )
    )
