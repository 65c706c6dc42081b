"""Built-in models: the paper's VGG16 and ResNet-101 (PROTOCOL.md), smaller ResNets, a CPU-sized CNN, any timm model.

Pretrained weights are torchvision's ImageNet-1k V1 files (named by torchvision's weights
enums) and timm's published files on the Hugging Face hub, loaded from local disk through
``harness.weights`` (``bench weights fetch`` downloads them). The 1000-class layer is loaded
with the rest and then replaced by a fresh ``Linear(·, C)``, exactly as fine-tuning does.
"""

from __future__ import annotations

from harness import ModelSpec, hookimpl
from harness.weights import load_state_dict, read_state_dict, resolve, resolve_hub

RESNET_WEIGHTS = {"resnet18": "ResNet18_Weights", "resnet50": "ResNet50_Weights", "resnet101": "ResNet101_Weights"}


def _resnet_builder(arch: str):
    def build(num_classes: int, pretrained: bool):
        """torchvision ResNet; global average pooling, then ``fc = Linear(features, C)``."""
        import torch.nn as nn
        import torchvision.models as tvm

        model = getattr(tvm, arch)(weights=None)
        if pretrained:
            model.load_state_dict(load_state_dict(getattr(tvm, RESNET_WEIGHTS[arch]).IMAGENET1K_V1))
        model.fc = nn.Linear(model.fc.in_features, num_classes)
        return model

    return build


def build_vgg16(num_classes: int, pretrained: bool):
    """torchvision VGG16: ``AdaptiveAvgPool2d((7, 7))``, classifier 4096-4096, last layer → C."""
    import torch.nn as nn
    import torchvision.models as tvm

    model = tvm.vgg16(weights=None)
    if pretrained:
        model.load_state_dict(load_state_dict(tvm.VGG16_Weights.IMAGENET1K_V1))
    model.classifier[-1] = nn.Linear(model.classifier[-1].in_features, num_classes)
    return model


def build_smallcnn(num_classes: int, pretrained: bool):
    """Four 3×3 conv-BN-ReLU blocks (32-64-128-256 channels, 2×2 max pooling between),
    global max pooling and a Linear head: a model that learns in minutes on a CPU.

    Global max pooling answers "is this class anywhere in the image", which suits small
    objects in multi-label images better than average pooling does when training from scratch.
    """
    import torch.nn as nn

    from harness import UserError

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


def build_timm(num_classes: int, pretrained: bool, variant: str):
    """Any timm model with a C-way classifier; pretrained weights from a local file.

    ``variant`` is a timm model name (``resnet50``, ``resnet50.a1_in1k``), whose weights are
    the file timm publishes on the Hugging Face hub (``model.safetensors`` of its hub id) or,
    for the few without a hub id, at its URL; or ``hf-hub:OWNER/NAME``, a hub repository
    whose ``config.json`` names the architecture. The returned module carries
    ``head_prefixes`` naming timm's classifier module, which differs between families.
    ``normalization`` (the mean and std of its ``pretrained_cfg``) is applied to its inputs by the core.
    """
    import json

    import timm

    from harness import UserError

    overlay, model_args = None, {}
    if variant.startswith("hf-hub:"):
        repo_id = variant.removeprefix("hf-hub:")
        config_file = resolve_hub(repo_id, "config.json", weights=False)
        weights_file = resolve_hub(repo_id) if pretrained else None
        try:
            config = json.loads(config_file.read_text(encoding="utf-8"))
            architecture, pretrained_cfg = config["architecture"], dict(config.get("pretrained_cfg", {}))
            model_args = dict(config.get("model_args", {}))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise UserError(f"{config_file}: not a timm model config ({type(error).__name__}: {error}); "
                            f"fetch it again with `bench weights fetch timm:{variant}`") from None
        if not timm.is_model(architecture):
            raise UserError(f"{config_file}: timm {timm.__version__} has no architecture {architecture!r}; upgrade timm")
        pretrained_cfg.pop("source", None)
        variant, overlay = architecture, pretrained_cfg
    elif not timm.is_model(variant):
        raise UserError(f"timm has no model {variant!r}; `python -c \"import timm; print(timm.list_models('*{variant}*'))\"` lists similar names")
    else:
        config = timm.models.get_pretrained_cfg(variant)
        hub_id = getattr(config, "hf_hub_id", None) if config is not None else None
        url = getattr(config, "url", None) if config is not None else None
        if pretrained and hub_id:
            weights_file = resolve_hub(hub_id, getattr(config, "hf_hub_filename", None) or "model.safetensors")
        elif pretrained:
            weights_file = resolve(url.rsplit("/", 1)[-1] if url else f"{variant}.pth", url=url)
        overlay = {}
    if pretrained:
        overlay["state_dict"] = read_state_dict(weights_file)
    model = timm.create_model(variant, pretrained=pretrained, num_classes=num_classes,
                              pretrained_cfg_overlay=overlay or None, **model_args)
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
