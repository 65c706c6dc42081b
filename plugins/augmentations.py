"""The paper's augmentations M1–M3 (cumulative): flips and mixup on whole batches on the device.

Images arrive as float (B, 3, S, S) in [0, 1]. For ``flip`` (M1) the input pipeline resized
each whole image like the paper's ``Resize((s, s))``; ``crop`` (M2) and ``mixup`` (M3)
declare ``input_crop="random-resized"``, so the pipeline has already cut torchvision's
``RandomResizedCrop`` box from each original image and resized it to (S, S)
(``harness.pipeline``). All three declare ``input_flip``: the pipeline flips the uint8 images
in the pass that converts them to float (and, for M1 and M2, which have nothing else to do,
normalises them there too), drawing exactly what ``random_flip`` draws; M3's ``augment`` then
only mixes. ``augment_flip`` and ``augment_mixup`` do the same on float batches, for plugins
that build on them. Every random number is drawn from the CPU generator the trainer seeds,
so a run repeats exactly on any device.
"""

from __future__ import annotations

from harness import AugmentationSpec, hookimpl


def to_device_of(values, images):
    """Move random draws made on the CPU to the images' device without a host sync
    (a copy from pageable memory would wait for the GPU queue to drain)."""
    if images.device.type == "cuda":
        return values.pin_memory().to(images.device, non_blocking=True)
    return values


def random_flip(images, generator):
    """``RandomHorizontalFlip(p=0.5)`` for each image independently."""
    import torch

    flip = torch.rand(images.shape[0], generator=generator) < 0.5
    return torch.where(to_device_of(flip, images)[:, None, None, None], images.flip(-1), images)


def augment_flip(images, targets, epoch, generator):
    """M1, and M2 after the input crop: horizontal flip."""
    return random_flip(images, generator), targets


def mix_batch(images, targets, generator):
    """The paper's mixup: pair each sample with a random permutation of the batch;
    ``x = (x_i + x_j) / 2`` and ``y = y_i OR y_j``; the mixed batch replaces the original."""
    import torch

    partner = to_device_of(torch.randperm(images.shape[0], generator=generator), images)
    return (images + images[partner]) / 2, torch.maximum(targets, targets[partner])


def mixup_on_even_epochs(images, targets, epoch, generator):
    """Mixup on epochs 0, 2, 4, … (counted from 0), the batch unchanged on the others."""
    if epoch % 2 == 0:
        return mix_batch(images, targets, generator)
    return images, targets


def augment_mixup(images, targets, epoch, generator):
    """M3 after the input crop: horizontal flip, plus mixup on epochs 0, 2, 4, … (counted from 0)."""
    images, targets = augment_flip(images, targets, epoch, generator)
    return mixup_on_even_epochs(images, targets, epoch, generator)


@hookimpl
def register_augmentations(register):
    register(AugmentationSpec("flip", None, "1", "M1: Resize((s, s)) + RandomHorizontalFlip", input_flip=True))
    register(AugmentationSpec("crop", None, "2", "M2: RandomResizedCrop(s) of the original image + "
                              "RandomHorizontalFlip", input_crop="random-resized", input_flip=True))
    register(AugmentationSpec("mixup", mixup_on_even_epochs, "2", "M3: M2 + mixup (mean image, OR labels) on even "
                              "epochs", input_crop="random-resized", input_flip=True))
