"""A plugin for tests that stop a run in the middle: ``slow-flip`` is flip, 0.1 s slower per batch."""

import time

from harness import AugmentationSpec, hookimpl
from plugins.augmentations import augment_flip


def slow_flip(images, targets, epoch, generator):
    time.sleep(0.1)
    return augment_flip(images, targets, epoch, generator)


@hookimpl
def register_augmentations(register):
    register(AugmentationSpec(name="slow-flip", augment=slow_flip, version="1"))
