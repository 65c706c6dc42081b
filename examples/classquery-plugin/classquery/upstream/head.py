"""A class-query attention head: each class has a learned query that attends over the spatial
features, and reads its logit from what it attended to.

With features projected to keys K = W_k·F and values V = W_v·F (N positions of width d) and
the query q_c of class c:

    a_c = softmax_n(q_c · K_n / √d),    z_c = Σ_n a_cn V_n,    logit_c = w_c · z_c + b_c
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn


class ClassQueryHead(nn.Module):
    """(B, D, H, W) features → (B, C) logits through one class query per class (see the module docstring)."""

    def __init__(self, channels: int, num_classes: int, width: int = 64):
        super().__init__()
        self.keys = nn.Conv2d(channels, width, 1)
        self.values = nn.Conv2d(channels, width, 1)
        self.queries = nn.Parameter(torch.randn(num_classes, width) / math.sqrt(width))
        self.readout = nn.Parameter(torch.randn(num_classes, width) / math.sqrt(width))
        self.bias = nn.Parameter(torch.zeros(num_classes))

    def attention(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, N) attention of each class over the N = H·W positions."""
        keys = self.keys(features).flatten(2)  # (B, d, N)
        return torch.softmax(torch.einsum("cd,bdn->bcn", self.queries, keys) / math.sqrt(keys.shape[1]), dim=-1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        values = self.values(features).flatten(2)  # (B, d, N)
        attended = torch.einsum("bcn,bdn->bcd", self.attention(features), values)
        return (attended * self.readout).sum(-1) + self.bias
