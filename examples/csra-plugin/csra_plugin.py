"""CSRA models for multilabel-bench: class-specific residual attention on a torchvision ResNet.

Zhu & Wu, "Residual Attention: A Simple but Effective Method for Multi-Label Recognition",
ICCV 2021. A 1×1 convolution (the classifier) turns the backbone's last feature map into
one score map per class. Each class's logit is the spatial mean of its map (what global
average pooling followed by a linear layer gives) plus λ times an attention-pooled score:
the map averaged with weights softmax(T · map) over positions, so the positions where the
class responds most count most. T = ∞ makes that pooling a spatial max.

The module imports nothing heavy at load time, so that ``bench plugins`` stays fast; torch
and torchvision are imported when a model is built.
"""

from __future__ import annotations

import functools
import math

from harness import ModelSpec, hookimpl

__version__ = "0.2.0"

# torchvision's ImageNet-1k V1 files and the channel count of each backbone's last stage
BACKBONES = {
    "resnet18": ("resnet18-f37072fd.pth", 512),
    "resnet50": ("resnet50-0676ba61.pth", 2048),
    "resnet101": ("resnet101-63fe2227.pth", 2048),
}
LAMBDA = 0.1
TEMPERATURE = 1.0


def residual_attention_pool(score_maps, lam: float, temperature: float):
    """(B, C, H, W) class score maps → (B, C) logits: mean + λ · Σ softmax(T·s) · s over positions."""
    scores = score_maps.flatten(2)
    if math.isinf(temperature):
        attended = scores.amax(dim=2)
    else:
        attended = (scores.mul(temperature).softmax(dim=2) * scores).sum(dim=2)
    return scores.mean(dim=2) + lam * attended


@functools.cache
def csra_class():
    """The model class, defined on first use so that loading the plugin never imports torch."""
    import torch.nn as nn

    class CSRA(nn.Module):
        """ResNet feature map → 1×1 convolution per class → residual attention pooling."""

        def __init__(self, backbone: nn.Module, channels: int, num_classes: int, lam: float, temperature: float):
            super().__init__()
            self.backbone = backbone
            self.classifier = nn.Conv2d(channels, num_classes, kernel_size=1, bias=False)
            self.lam = lam
            self.temperature = temperature

        def forward(self, images):
            return residual_attention_pool(self.classifier(self.backbone(images)), self.lam, self.temperature)

    return CSRA


def build(num_classes: int, pretrained: bool, *, backbone: str, lam: float = LAMBDA, temperature: float = TEMPERATURE):
    """CSRA on ``backbone``; with ``pretrained``, the backbone starts from torchvision's ImageNet weights.

    The weights come from a local file through ``harness.weights`` (never the network), so
    the run records the file and its sha256. The ResNet's own pooling and 1000-way layer are
    dropped; the new classifier starts from PyTorch's default initialisation.
    """
    import torch.nn as nn
    import torchvision.models as tvm

    from harness.weights import load_state_dict

    filename, channels = BACKBONES[backbone]
    resnet = getattr(tvm, backbone)(weights=None)
    if pretrained:
        resnet.load_state_dict(load_state_dict(filename))
    features = nn.Sequential(*list(resnet.children())[:-2])  # up to layer4: no avgpool, no fc
    return csra_class()(features, channels, num_classes, lam, temperature)


@hookimpl
def register_models(register):
    for backbone in BACKBONES:
        register(
            ModelSpec(
                name=f"csra-{backbone}",
                version="1",
                build=functools.partial(build, backbone=backbone),
                head_prefixes=("classifier",),
                backbone=backbone,
                description=f"CSRA (Zhu & Wu 2021) on torchvision {backbone}, λ={LAMBDA}, T={TEMPERATURE:g}",
            )
        )
