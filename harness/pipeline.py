"""The training and evaluation input pipeline: decode once, then work on tensors.

Each image is decoded once and resized to the run's square input size with PIL's bilinear
filter (what the paper's ``Resize((s, s))`` does), and kept in a uint8 memory-mapped array
on disk, keyed by dataset fingerprint, split and size. Epochs then read batches from that
array; flips, crops, mixup and normalisation run on the training device. Building the cache
takes a file lock, so two runs that need the same cache build it once.
"""

from __future__ import annotations

import json
import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from harness.cache import cache_root
from harness.errors import UserError


def decode_resized(path: Path, size: int) -> np.ndarray:
    """One image file as an (S, S, 3) uint8 array, resized like ``Resize((s, s))``; a file
    that cannot be read or decoded is one ``UserError`` line naming it."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise UserError(f"cannot decode image {path} ({' '.join(str(error).split())[:120]}); "
                        "`bench data verify` lists every broken image") from None


def image_cache(paths: Sequence[Path], size: int, key: str) -> np.ndarray:
    """The (N, S, S, 3) uint8 array of ``paths`` resized to ``size``, built once and memory-mapped.

    ``key`` identifies the image list (dataset fingerprint and split); the array lives in
    ``cache_root()/images/<key>-<size>.u8`` with a JSON header beside it.
    """
    from filelock import FileLock

    from harness.progress import bar

    folder = cache_root() / "images"
    folder.mkdir(parents=True, exist_ok=True)
    data_file = folder / f"{key}-{size}.u8"
    header_file = folder / f"{key}-{size}.json"
    shape = (len(paths), size, size, 3)
    with FileLock(str(data_file) + ".lock"):
        if not header_file.is_file():
            staging = data_file.with_suffix(".partial")
            array = np.lib.format.open_memmap(staging, mode="w+", dtype=np.uint8, shape=shape)

            def fill(index: int) -> None:
                array[index] = decode_resized(paths[index], size)

            with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
                for _ in bar(pool.map(fill, range(len(paths))), total=len(paths), desc=f"caching {size}px images",
                             unit="img"):
                    pass
            array.flush()
            del array
            os.replace(staging, data_file)
            header_file.write_text(json.dumps({"shape": shape, "key": key}))
    return np.load(data_file, mmap_mode="r")


def decoded_images(paths: Sequence[Path], size: int) -> np.ndarray:
    """The same array as ``image_cache``, decoded now and kept in memory (no cache)."""
    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        return np.stack(list(pool.map(lambda p: decode_resized(p, size), paths)))


READ_AHEAD = 3  # batches read ahead of the training step


class Batches:
    """Batches of (uint8 NHWC images, label rows) from an image array, read ahead in a thread.

    ``batches`` is the list of index arrays to read, in order. Reading the memory map (in
    sorted order, which is faster on disk) and pinning happen in a background thread so
    that they overlap the training step.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, batches: Sequence[np.ndarray],
                 *, pin_memory: bool = False):
        self.images, self.labels, self.batches = images, labels, batches
        self.pin_memory = pin_memory

    def __len__(self) -> int:
        return len(self.batches)

    def _read(self, indices: np.ndarray):
        import torch

        ascending = np.argsort(indices, kind="stable")
        rank = np.empty_like(ascending)
        rank[ascending] = np.arange(len(indices))
        sorted_indices = indices[ascending]
        images = torch.from_numpy(np.ascontiguousarray(self.images[sorted_indices][rank]))
        labels = torch.from_numpy(np.ascontiguousarray(self.labels[sorted_indices][rank]))
        if self.pin_memory:
            images, labels = images.pin_memory(), labels.pin_memory()
        return images, labels

    def __iter__(self) -> Iterator:
        slots: queue.Queue = queue.Queue(READ_AHEAD)
        stop = threading.Event()

        def produce() -> None:
            try:
                for indices in self.batches:
                    if stop.is_set():
                        return
                    slots.put(self._read(indices))
                slots.put(None)
            except BaseException as error:  # surfaced in the consumer
                slots.put(error)

        worker = threading.Thread(target=produce, daemon=True)
        worker.start()
        try:
            while (item := slots.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            while worker.is_alive():
                try:
                    slots.get_nowait()
                except queue.Empty:
                    worker.join(0.01)


def to_model_input(images_uint8, device, channels_last: bool):
    """uint8 (B, S, S, 3) on the host → float (B, 3, S, S) in [0, 1] on ``device``."""
    import torch

    images = images_uint8.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255)
    return images.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def normalization(mean, std, device):
    """(mean, std) as (1, 3, 1, 1) tensors on ``device``: made once, so that no step copies
    from the host."""
    import torch

    return (torch.tensor(mean, device=device).view(1, 3, 1, 1), torch.tensor(std, device=device).view(1, 3, 1, 1))


def normalize(images, mean, std):
    """ImageNet mean/std normalisation with tensors from ``normalization``, as ``transforms.Normalize`` does."""
    return (images - mean) / std
