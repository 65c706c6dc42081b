"""The paper's augmentations M1–M3 (cumulative), applied to whole batches on the device.

Images arrive as float (B, 3, S, S) in [0, 1], already resized to (S, S) like the paper's
``Resize((s, s))``. Every random number is drawn from the CPU generator the trainer seeds,
so a run repeats exactly on any device.
"""

from __future__ import annotations

import math

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


def random_resized_crop_boxes(batch: int, height: int, width: int, generator, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """torchvision's ``RandomResizedCrop`` box sampling, for a whole batch at once.

    Per image: up to 10 tries of area ~ U(scale)·H·W and log-aspect ~ U(log ratio); the
    first box that fits is used, else the centre crop with the aspect clamped to ``ratio``.
    Returns (B, 4) float boxes ``x1, y1, x2, y2`` in pixels.
    """
    import torch

    tries = 10
    area = height * width * torch.empty(batch, tries).uniform_(scale[0], scale[1], generator=generator)
    log_ratio = torch.empty(batch, tries).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    aspect = torch.exp(log_ratio)
    w = torch.round(torch.sqrt(area * aspect))
    h = torch.round(torch.sqrt(area / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = torch.argmax(fits.int(), dim=1)
    any_fit = fits.any(dim=1)
    rows = torch.arange(batch)
    w, h = w[rows, first], h[rows, first]
    top = torch.floor(torch.rand(batch, generator=generator) * (height - h + 1))
    left = torch.floor(torch.rand(batch, generator=generator) * (width - w + 1))
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fallback_w, fallback_h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        fallback_w, fallback_h = round(height * ratio[1]), height
    else:
        fallback_w, fallback_h = width, height
    w = torch.where(any_fit, w, torch.tensor(float(fallback_w)))
    h = torch.where(any_fit, h, torch.tensor(float(fallback_h)))
    top = torch.where(any_fit, top, torch.tensor(float((height - fallback_h) // 2)))
    left = torch.where(any_fit, left, torch.tensor(float((width - fallback_w) // 2)))
    return torch.stack([left, top, left + w, top + h], dim=1)


def random_resized_crop(images, generator):
    """Crop a random box from each image and resize it back to (S, S), bilinearly.

    ``roi_align`` does every crop-and-resize of the batch in one kernel, sampling each output
    pixel at its centre (boxes are never larger than the image, so this only enlarges; a
    full-image box returns the image unchanged).
    """
    import torch
    from torchvision.ops import roi_align

    batch, _, height, width = images.shape
    boxes = to_device_of(random_resized_crop_boxes(batch, height, width, generator), images).to(images.dtype)
    rois = torch.cat([torch.arange(batch, dtype=images.dtype, device=images.device)[:, None], boxes], dim=1)
    return roi_align(images, rois, output_size=(height, width), spatial_scale=1.0, sampling_ratio=1, aligned=True)


def augment_flip(images, targets, epoch, generator):
    """M1: horizontal flip."""
    return random_flip(images, generator), targets


def augment_crop(images, targets, epoch, generator):
    """M2: random resized crop, then horizontal flip."""
    return random_flip(random_resized_crop(images, generator), generator), targets


def mix_batch(images, targets, generator):
    """The paper's mixup: pair each sample with a random permutation of the batch;
    ``x = (x_i + x_j) / 2`` and ``y = y_i OR y_j``; the mixed batch replaces the original."""
    import torch

    partner = to_device_of(torch.randperm(images.shape[0], generator=generator), images)
    return (images + images[partner]) / 2, torch.maximum(targets, targets[partner])


def augment_mixup(images, targets, epoch, generator):
    """M3: M2, plus mixup on epochs 0, 2, 4, … (counted from 0)."""
    images, targets = augment_crop(images, targets, epoch, generator)
    if epoch % 2 == 0:
        images, targets = mix_batch(images, targets, generator)
    return images, targets


@hookimpl
def register_augmentations(register):
    register(AugmentationSpec("flip", augment_flip, "1", "M1: Resize((s, s)) + RandomHorizontalFlip"))
    register(AugmentationSpec("crop", augment_crop, "1", "M2: RandomResizedCrop(s) + RandomHorizontalFlip"))
    register(AugmentationSpec("mixup", augment_mixup, "1", "M3: M2 + mixup (mean image, OR labels) on even epochs"))
