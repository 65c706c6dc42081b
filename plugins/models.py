"""Built-in models: the paper's VGG16 and ResNet-101 (PROTOCOL.md), smaller ResNets, a CPU-sized CNN, any timm model.

Pretrained weights are torchvision's ImageNet-1k V1 files, loaded from local disk through
``harness.weights`` (never downloaded). The 1000-class layer is loaded with the rest and
then replaced by a fresh ``Linear(·, C)``, exactly as fine-tuning from torchvision does.
"""

from __future__ import annotations

from harness import ModelSpec, hookimpl
from harness.weights import load_state_dict, resolve

RESNET_WEIGHTS = {
    "resnet18": "resnet18-f37072fd.pth",
    "resnet50": "resnet50-0676ba61.pth",
    "resnet101": "resnet101-63fe2227.pth",
}
VGG16_WEIGHTS = "vgg16-397923af.pth"


def _resnet_builder(arch: str):
    def build(num_classes: int, pretrained: bool):
        """torchvision ResNet; global average pooling, then ``fc = Linear(features, C)``."""
        import torch.nn as nn
        import torchvision.models as tvm

        model = getattr(tvm, arch)(weights=None)
        if pretrained:
            model.load_state_dict(load_state_dict(RESNET_WEIGHTS[arch]))
        model.fc = nn.Linear(model.fc.in_features, num_classes)
        return model

    return build


def build_vgg16(num_classes: int, pretrained: bool):
    """torchvision VGG16: ``AdaptiveAvgPool2d((7, 7))``, classifier 4096-4096, last layer → C."""
    import torch.nn as nn
    import torchvision.models as tvm

    model = tvm.vgg16(weights=None)
    if pretrained:
        model.load_state_dict(load_state_dict(VGG16_WEIGHTS))
    model.classifier[-1] = nn.Linear(model.classifier[-1].in_features, num_classes)
    return model


def build_smallcnn(num_classes: int, pretrained: bool):
    """Four 3×3 conv-BN-ReLU blocks (32-64-128-256 channels, 2×2 max pooling between),
    global max pooling and a Linear head: a model that learns in minutes on a CPU.

    Global max pooling answers "is this class anywhere in the image", which suits small
    objects in multi-label images better than average pooling does when training from scratch.
    """
    import torch.nn as nn

    from harness.errors import UserError

    if pretrained:
        raise UserError("smallcnn has no pretrained weights; use --pretrained none")

    def block(inputs: int, outputs: int) -> list:
        return [nn.Conv2d(inputs, outputs, 3, padding=1, bias=False), nn.BatchNorm2d(outputs), nn.ReLU(inplace=True)]

    features = nn.Sequential(
        *block(3, 32), nn.MaxPool2d(2), *block(32, 64), nn.MaxPool2d(2),
        *block(64, 128), nn.MaxPool2d(2), *block(128, 256),
    )
    model = nn.Sequential()
    model.add_module("features", features)
    model.add_module("pool", nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten()))
    model.add_module("head", nn.Linear(256, num_classes))
    return model


def timm_weights_filename(variant: str) -> str:
    """The file name timm publishes for ``variant``'s default weights, or ``<variant>.pth``."""
    import timm

    config = timm.models.get_pretrained_cfg(variant) if timm.is_model(variant) else None
    url = getattr(config, "url", None) if config is not None else None
    return url.rsplit("/", 1)[-1] if url else f"{variant}.pth"


def build_timm(num_classes: int, pretrained: bool, variant: str):
    """Any timm model with a C-way classifier; pretrained weights from a local file.

    The returned module carries ``head_prefixes`` naming timm's classifier module, which
    differs between families (``fc``, ``head.fc``, ``classifier``), and ``normalization``,
    the mean and std of its ``pretrained_cfg``, which the core applies to its inputs.
    """
    import timm

    from harness.errors import UserError

    if not timm.is_model(variant):
        raise UserError(f"timm has no model {variant!r}; `python -c \"import timm; print(timm.list_models('*{variant}*'))\"` lists similar names")
    overlay = {"file": str(resolve(timm_weights_filename(variant)))} if pretrained else None
    model = timm.create_model(
        variant, pretrained=pretrained, num_classes=num_classes, pretrained_cfg_overlay=overlay
    )
    classifier = model.pretrained_cfg.get("classifier", "head")
    model.head_prefixes = tuple(classifier) if isinstance(classifier, (tuple, list)) else (classifier,)
    if "mean" in model.pretrained_cfg and "std" in model.pretrained_cfg:  # what its weights were trained with
        model.normalization = (tuple(model.pretrained_cfg["mean"]), tuple(model.pretrained_cfg["std"]))
    return model


@hookimpl
def register_models(register):
    for arch in ("resnet18", "resnet50", "resnet101"):
        register(
            ModelSpec(
                name=arch,
                version="1",
                build=_resnet_builder(arch),
                head_prefixes=("fc",),
                description=f"torchvision {arch}, global average pooling, Linear head",
            )
        )
    register(
        ModelSpec(
            name="vgg16",
            version="1",
            build=build_vgg16,
            head_prefixes=("classifier",),
            description="torchvision VGG16, adaptive 7x7 pooling, 4096-4096 classifier with a C-way last layer",
        )
    )
    register(
        ModelSpec(
            name="smallcnn",
            version="1",
            build=build_smallcnn,
            head_prefixes=("head",),
            description="4-block CNN with global max pooling, for the smoke protocol on a CPU",
        )
    )
    register(
        ModelSpec(
            name="timm",
            version="1",
            build=build_timm,
            takes_variant=True,
            description="any timm model as timm:<name>, classifier replaced by a C-way layer",
        )
    )
