"""The component specs a plugin registers, and the data a dataset hands the core.

Specs are frozen dataclasses: a plugin builds one and passes it to the ``register``
callback its hook receives. Heavy imports (torch, torchvision, timm) belong inside the
callables, so that listing plugins stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch


@dataclass(frozen=True)
class Split:
    """One split of a dataset: image ids, their files, and the label matrix.

    ``labels`` is an N×C int8 array: 1 positive, 0 negative, -1 ignored (for example a
    VOC object marked difficult). ``image_paths[i]`` is the file holding image ``ids[i]``.
    """

    ids: Sequence[str]
    image_paths: Sequence[Path]
    labels: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.ids)
        if len(self.image_paths) != n or self.labels.shape[0] != n:
            raise ValueError(
                f"split has {n} ids, {len(self.image_paths)} image paths and "
                f"{self.labels.shape[0]} label rows; they must be equal"
            )

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Dataset:
    """What a dataset plugin returns: class names in their official order and the splits.

    ``coverage`` is the fraction of listed images that were found (1.0 for complete data);
    ``info`` holds anything the loader wants recorded (for example the root folder used).
    """

    name: str
    classes: Sequence[str]
    splits: dict[str, Split]
    coverage: float = 1.0
    problems: Sequence[dict] = ()
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetInfo:
    """What a model may know about the dataset it is built for: the training split only.

    A model whose ``build`` declares a keyword parameter ``dataset`` receives one. ``classes``
    are in the official order (column ``c`` of ``train_labels`` is ``classes[c]``);
    ``train_labels`` is the train split's read-only N×C int8 matrix (1, 0, -1);
    ``fingerprint`` identifies the whole dataset. Nothing of the test split is reachable
    from here.
    """

    name: str
    classes: tuple[str, ...]
    fingerprint: str
    train_labels: np.ndarray


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: ``load(data_root, options) -> Dataset``.

    ``data_root`` is the ``--data-root`` folder (``None`` when the user gave none; a
    dataset that needs one raises ``UserError``). ``options`` holds loader switches such
    as ``skip_missing``. ``canonical`` maps split name to the official image count, checked
    by ``bench data verify``; ``canonical_fingerprint`` is the fingerprint of the complete
    official data, when known, which leaderboards require. ``takes_data_root=False``
    (a generated dataset) makes ``--data-root`` an error.
    """

    name: str
    load: Callable[..., Dataset]
    version: str = "0"
    description: str = ""
    canonical: dict[str, int] | None = None
    canonical_fingerprint: str | None = None
    takes_data_root: bool = True


@dataclass(frozen=True)
class ModelSpec:
    """A model: ``build(num_classes, pretrained) -> torch.nn.Module``.

    The module maps a float (B, 3, H, W) batch to (B, C) logits. Parameters whose names
    start with one of ``head_prefixes`` train at the protocol's head learning rate, all
    others at the backbone rate. With ``pretrained=True``, ``build`` must load its
    weights through ``harness.weights.load_state_dict`` or ``harness.weights.resolve``
    (never from the network), so that the file and its sha256 are recorded.
    ``takes_variant`` models are named ``NAME:VARIANT`` (``timm:convnext_tiny``) and get
    ``variant=`` as a keyword argument. A ``build`` that declares a keyword parameter
    ``dataset`` gets ``dataset=DatasetInfo(...)`` (the training labels, for a label graph
    or class statistics); one that declares ``size`` gets the run's input size.
    ``backbone`` names the baseline architecture the method builds on
    (``resnet101``), so that leaderboards compare it with the baseline of that backbone.
    """

    name: str
    build: Callable[..., "torch.nn.Module"]
    version: str = "0"
    head_prefixes: tuple[str, ...] = ()
    description: str = ""
    takes_variant: bool = False
    backbone: str | None = None
    # What the method declares (harness/declared.py): its input normalisation, applied by the
    # core (ImageNet's by default; a built model's own ``normalization`` attribute wins), its
    # hyperparameters as JSON values, the code it vendors (owner/repo@commit), paper and code URLs.
    normalization: tuple[tuple[float, float, float], tuple[float, float, float]] = (
        (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    params: dict[str, Any] = field(default_factory=dict)
    upstream: str | None = None
    paper: str | None = None
    code: str | None = None


@dataclass(frozen=True)
class AugmentationSpec:
    """A training-time augmentation applied to a whole batch on the training device.

    ``augment(images, targets, epoch, generator) -> (images, targets)``: ``images`` is a
    float (B, 3, S, S) batch in [0, 1] at the run's input size S, ``targets`` a float (B, C)
    0/1 matrix; ``generator`` is a seeded CPU ``torch.Generator`` to draw every random
    number from, so that runs repeat exactly. The output keeps the batch size and S.
    Normalisation happens after, in the core.

    ``input_crop`` says how the input pipeline turns each original image into the (S, S)
    image ``augment`` receives: ``None`` resizes the whole image (``Resize((s, s))``);
    ``"random-resized"`` crops torchvision's ``RandomResizedCrop`` box (scale 0.08–1, aspect
    3/4–4/3), sampled in the original image's pixels, and resizes it to (S, S).

    ``input_flip=True`` has the input pipeline apply ``RandomHorizontalFlip(p=0.5)`` to each
    image, with one uniform draw per image from ``generator`` before ``augment`` is called, in
    the same pass as the float conversion; ``augment`` receives the flipped images.
    ``augment=None`` means nothing follows the input crop and flip: the normalisation then
    happens in that pass too.
    """

    name: str
    augment: Callable[..., tuple["torch.Tensor", "torch.Tensor"]] | None
    version: str = "0"
    description: str = ""
    input_crop: str | None = None
    input_flip: bool = False


@dataclass(frozen=True)
class FusionSpec:
    """Score-level fusion of several runs: ``fuse(list of N×C logit arrays) -> N×C logits``.

    Inputs are aligned by image id by the core; the output must be logits (or any
    monotone score whose threshold at 0 means "present") so that every metric applies.
    """

    name: str
    fuse: Callable[[list[np.ndarray]], np.ndarray]
    version: str = "0"
    description: str = ""


@dataclass(frozen=True)
class LossSpec:
    """A training loss: ``loss(logits, targets) -> scalar tensor``.

    ``logits`` is the model's float32 (B, C) output and ``targets`` a float32 (B, C) 0/1
    matrix as the protocol prepares it (ignored labels trained as positives, mixup's OR).
    The trainer computes it in float32 even under bf16 autocast; the gradient honesty check
    calls it on float64 tensors too, so it must not assume a dtype. The protocol names its
    loss (``bce``); any other is a recorded deviation.
    """

    name: str
    loss: Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]
    version: str = "0"
    description: str = ""
    params: dict[str, Any] = field(default_factory=dict)  # its hyperparameters (γ, margin…), as JSON values
    upstream: str | None = None  # the code it vendors: owner/repo@commit


@dataclass(frozen=True)
class RecipeSpec:
    """A training recipe: the optimizer, its learning-rate schedule and an EMA of weights.

    ``make_optimizer(param_groups, protocol) -> torch.optim.Optimizer`` receives the
    protocol's two parameter groups (``[{"params", "lr", "name": "head"}, {…, "name":
    "backbone"}]``, learning rates from ``protocol``) and must optimise every parameter in
    them; its hyperparameters come from the groups' names and the protocol, not from the
    parameters (``bench leaderboard submit`` recomputes them on placeholder parameters).
    ``make_scheduler(optimizer, protocol, steps_per_epoch)`` returns a
    ``torch.optim.lr_scheduler.LRScheduler`` stepped after every optimizer step (None: the
    rates stay as made). ``ema_decay`` d keeps an exponential moving average of the weights,
    ``ema ← d·ema + (1 − d)·w`` after every step, and the test split is scored with it. The
    protocol's recipe is the built-in ``sgd-step``; any other is a recorded deviation.
    """

    name: str
    make_optimizer: Callable[..., "torch.optim.Optimizer"]
    make_scheduler: Callable[..., Any] | None = None
    ema_decay: float | None = None
    version: str = "0"
    description: str = ""


@dataclass(frozen=True)
class LoggerSpec:
    """Where a run's curves go (TensorBoard, W&B, MLflow, …): ``open(run) -> logger``.

    ``run`` is a ``harness.loggers.LoggedRun``: ``run.settings`` (the ``ResolvedRun``, as
    ``run.json`` stores it), ``run.folder`` (the folder the run writes into; put files
    under it) and ``run.run_id``. The logger has ``log_step(step, metrics)`` (the global
    step from 0; ``loss`` and ``lr/<group>`` of every training step), ``log_epoch(epoch,
    metrics)`` (``loss``, ``images_per_s``, ``seconds``, ``lr/<group>``, epoch from 0) and
    ``close(record)`` (the finished ``RunRecord``, or ``None`` when the run stopped early).
    Loggers only watch: a logger that raises is reported in one line and dropped, and the
    run goes on with the same results.
    """

    name: str
    open: Callable[[Any], Any]
    version: str = "0"
    description: str = ""


INPUT_CROPS = (None, "random-resized")
