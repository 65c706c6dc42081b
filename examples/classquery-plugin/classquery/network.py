"""The whole model: the backbone trunk, then the class-query head (the module ``head``)."""

from __future__ import annotations

import torch.nn as nn

from .upstream import ClassQueryHead, resnet_trunk


class ClassQueryNet(nn.Module):
    """(B, 3, H, W) images → (B, C) logits."""

    def __init__(self, backbone: str, num_classes: int, pretrained: bool):
        super().__init__()
        self.trunk, channels = resnet_trunk(backbone, pretrained)
        self.head = ClassQueryHead(channels, num_classes)

    def forward(self, images):
        return self.head(self.trunk(images))
