"""A torchvision ResNet without its pooling and 1000-way layer: (B, 3, H, W) → (B, D, H/32, W/32)."""

from __future__ import annotations

CHANNELS = {"resnet18": 512, "resnet50": 2048, "resnet101": 2048}
WEIGHTS = {"resnet18": "resnet18-f37072fd.pth", "resnet50": "resnet50-0676ba61.pth",
           "resnet101": "resnet101-63fe2227.pth"}


def resnet_trunk(name: str, pretrained: bool):
    """The ResNet ``name`` up to ``layer4`` and its channel count; ``pretrained`` loads torchvision's
    ImageNet weights from a local file through ``harness.weights`` (recorded, never downloaded)."""
    import torch.nn as nn
    import torchvision.models as tvm

    from harness.weights import load_state_dict

    resnet = getattr(tvm, name)(weights=None)
    if pretrained:
        resnet.load_state_dict(load_state_dict(WEIGHTS[name]))
    return nn.Sequential(*list(resnet.children())[:-2]), CHANNELS[name]
