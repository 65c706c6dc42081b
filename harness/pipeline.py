"""The training and evaluation input pipeline: image files to uint8 (B, S, S, 3) batches, then tensors.

A split's images reach the model at size S in one of two ways, which give the same bytes for
images that are not cropped:

- the **resized cache** (``image_cache``): every image decoded once and resized to (S, S) with
  PIL's bilinear filter, as the paper's ``Resize((s, s))`` does, kept in a uint8 array file
  under ``cache_root()/images``. It is used only where it is exact, for images that are not
  cropped (the test split, and the training split of an augmentation without ``input_crop``),
  only with ``--cache``, and only where it fits the disk (``harness.cache.require_space``).
- **decoding per batch** (``DecodedImages``): the original files decoded for every batch by a
  thread pool (Pillow releases the GIL while it decodes and resizes). An augmentation with
  ``input_crop="random-resized"`` gets torchvision's ``RandomResizedCrop`` box
  (``random_resized_crop_box``), drawn in the original image's pixels, per image in the
  epoch's order, from the epoch's crop generator; the box is cut from the decoded image and
  resized to (S, S) exactly as ``torchvision.transforms.functional.resized_crop`` does on a
  PIL image. On a GPU, the JPEG files of cropped batches are decoded with nvJPEG and cropped
  and resized there (antialiased bilinear), which is close to PIL but not bit-identical.

``Batches`` reads batches ahead of the training step in a thread. On the training device,
``to_model_input`` then flips (an augmentation's ``input_flip``), converts to float and
normalises in one pass; an augmentation's ``augment`` (mixup), where there is one, runs
between the conversion and the normalisation.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import io
import itertools
import json
import math
import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from harness import cache
from harness.machine import usable_cores
from harness.errors import UserError
from harness.naming import sha256_of
from harness.image_files import UnsafeImageFile, check_pixels, open_image_file
from harness.progress import bar, log

CROP_SCALE = (0.08, 1.0)  # RandomResizedCrop's defaults, which the paper uses
CROP_RATIO = (3 / 4, 4 / 3)
CROP_TRIES = 10
FORMAT = "3"  # of the cache files; part of every cache key
READ_AHEAD = 3  # batches read ahead of the training step
JPEG_MAGIC = b"\xff\xd8\xff"


def default_workers() -> int:
    """One decoding thread per core this process may run on."""
    return usable_cores()


def _decode(path: Path, size: int | None = None, box: Sequence[int] | None = None) -> np.ndarray:
    """The file as an RGB uint8 array, cut to ``box`` (top, left, height, width) if given and resized
    to (size, size) if given; a file that cannot be read or decoded is one ``UserError`` line."""
    from PIL import Image

    try:
        with open_image_file(path) as stream, Image.open(stream) as image:
            check_pixels(image)
            image = to_rgb(image)
            if box is not None:
                top, left, height, width = (int(v) for v in box)
                image = image.crop((left, top, left + width, top + height))
            if size is not None:
                image = image.resize((size, size), Image.BILINEAR)
            return np.asarray(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, UnsafeImageFile) as error:
        raise UserError(f"cannot decode image {path} ({' '.join(str(error).split())[:120]}); "
                        "`bench data verify` lists every broken image") from None


def to_rgb(image):
    """An opened PIL image as 8-bit RGB, as torchvision's decoders give it: 16-bit samples keep
    their high byte (``v >> 8``; Pillow's own ``convert`` clips 16-bit grayscale to 255), a
    palette becomes its colours and alpha is dropped; CMYK is converted; EXIF orientation is
    ignored (torchvision's ``decode_image`` default and its PIL loader): pixels stay as stored."""
    from PIL import Image

    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        high = np.clip(np.asarray(image, dtype=np.int64) >> 8, 0, 255).astype(np.uint8)
        image = Image.fromarray(high, "L")
    return image.convert("RGB")


def decode_resized(path: Path, size: int) -> np.ndarray:
    """One image file as an (S, S, 3) uint8 array, resized like ``Resize((s, s))`` on a PIL image."""
    return _decode(path, size)


def decode_cropped(path: Path, box: Sequence[int], size: int) -> np.ndarray:
    """One image file cut to ``box`` = (top, left, height, width) in its own pixels and resized to
    (S, S): ``torchvision.transforms.functional.resized_crop`` on the PIL image, bilinear."""
    return _decode(path, size, box)


@functools.cache
def _log_ratio() -> tuple[float, float]:
    """log ``CROP_RATIO`` in float32, as torchvision computes it."""
    import torch

    low, high = torch.log(torch.tensor(CROP_RATIO)).tolist()
    return low, high


def random_resized_crop_box(generator, height: int, width: int) -> tuple[int, int, int, int]:
    """torchvision's ``RandomResizedCrop.get_params`` for an image of ``height`` × ``width``, drawing from
    ``generator``: the same draws in the same order, so the same seed gives the same box.

    Up to 10 tries of an area uniform in ``CROP_SCALE`` of the image and a log aspect ratio
    uniform in log ``CROP_RATIO``; the first that fits is placed uniformly, else the centre crop
    with the aspect ratio clamped to ``CROP_RATIO``. Returns (top, left, height, width).
    """
    import torch

    area = height * width
    low, high = _log_ratio()
    draw = torch.empty(1)  # torchvision draws into a new one-element tensor each time: the same numbers
    for _ in range(CROP_TRIES):
        target_area = area * draw.uniform_(CROP_SCALE[0], CROP_SCALE[1], generator=generator).item()
        aspect_ratio = draw.uniform_(low, high, generator=generator).exp_().item()
        w = int(round(math.sqrt(target_area * aspect_ratio)))
        h = int(round(math.sqrt(target_area / aspect_ratio)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, size=(1,), generator=generator))
            left = int(torch.randint(0, width - w + 1, size=(1,), generator=generator))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(CROP_RATIO):
        w, h = width, int(round(width / min(CROP_RATIO)))
    elif in_ratio > max(CROP_RATIO):
        w, h = int(round(height * max(CROP_RATIO))), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def in_order(pool: ThreadPoolExecutor, function: Callable, items: Iterable, ahead: int) -> Iterator:
    """``function`` over ``items`` on ``pool``, results in order, at most ``ahead`` pending at a time."""
    pending: collections.deque = collections.deque()
    try:
        for item in items:
            pending.append(pool.submit(function, item))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()


# -- caches ----------------------------------------------------------------------------------


def content_key(paths: Sequence[Path], *parts: object) -> str:
    """16 hex digits naming what the images are, not how their paths are spelled: each file's
    resolved path (``os.path.realpath``), size and modification time, with ``parts`` (the
    dataset fingerprint) and the cache format."""
    digest = hashlib.sha256(f"{FORMAT}\0{len(paths)}\0".encode())
    for part in parts:
        digest.update(f"{part}\0".encode())
    for path in paths:
        real = os.path.realpath(path)
        try:
            status = os.stat(real)
        except OSError:
            raise UserError(f"image file {path} not found; `bench data verify` lists every missing image") from None
        digest.update(f"{real}\0{status.st_size}\0{status.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _npy_header(shape: tuple[int, ...]) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "|u1", "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def image_cache(paths: Sequence[Path], size: int, name: str, key: str,
                workers: int | None = None) -> np.ndarray:
    """The (N, S, S, 3) uint8 array of ``paths`` resized like ``decode_resized``, built once, memory-mapped.

    It lives in ``cache_root()/images/<name>-<S>px-<key>/images.npy`` (``key`` from
    ``content_key``). The build takes the entry's lock, so two runs that need it build it once;
    its bytes are checked against the free space before any image is decoded (``cache.NoSpace``).
    ``meta.json`` records the file's sha256: a file that does not have it is decoded again
    (``_checked_images``), with a warning line naming it.
    """
    entry = cache.kind_folder("images") / f"{name}-{size}px-{key}"
    data = entry / "images.npy"
    shape = (len(paths), size, size, 3)
    header = _npy_header(shape)
    what = f"{len(paths)} {name} images at {size} px"
    if not data.is_file():
        cache.require_space(entry, len(header) + math.prod(shape), what)
    with cache.building(entry):
        if data.is_file() and not _checked_images(entry, header, len(header) + math.prod(shape)):
            log.warning(f"Warning: image cache {data} does not have the sha256 its {cache.META} records (planted or "
                        "corrupt); decoding the images again")
            data.unlink()
        if not data.is_file():
            workers = workers or default_workers()
            digest = hashlib.sha256()
            with ThreadPoolExecutor(workers) as pool:
                images = in_order(pool, lambda path: decode_resized(path, size).tobytes(), paths, 4 * workers)
                shown = bar(images, total=len(paths), desc=f"caching {size}px images", unit="img")
                cache.write_file(data, _hashed(itertools.chain([header], shown), digest), len(header) + math.prod(shape))
            cache.write_meta(entry, what, images=len(paths), size=size, format=FORMAT, sha256=digest.hexdigest(),
                             signature=cache.file_signature(data), checked_ns=time.time_ns())
    cache.mark_used(entry)
    return np.load(data, mmap_mode="r")


def _hashed(chunks: Iterable[bytes], digest) -> Iterator[bytes]:
    """``chunks`` as they are, each fed to ``digest`` on its way."""
    for chunk in chunks:
        digest.update(chunk)
        yield chunk


def _checked_images(entry: Path, header: bytes, size: int) -> bool:
    """Whether ``entry/images.npy`` is the file its ``meta.json`` records: hashed again (and the
    meta then records its signature anew) unless its signature is the one recorded when it
    was checked and it had settled then (``cache.settled``), so a planted or corrupt file is
    never trusted and a settled one costs a ``stat``."""
    data = entry / "images.npy"
    try:
        meta = json.loads((entry / cache.META).read_text())
        signature = cache.file_signature(data)
        if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str) or signature[0] != size:
            return False
        checked_ns = meta.get("checked_ns")
        if meta.get("signature") == signature and isinstance(checked_ns, int) and cache.settled(signature, checked_ns):
            return True
        with open(data, "rb") as stream:
            if stream.read(len(header)) != header:
                return False
        digest = sha256_of(data)
    except (OSError, ValueError):
        return False
    if digest != meta["sha256"] or cache.file_signature(data) != signature:
        return False
    cache.write_meta(entry, meta.get("what", "images"), **{**{k: v for k, v in meta.items() if k != "what"},
                                                           "signature": signature, "checked_ns": time.time_ns()})
    return True


def read_sizes(paths: Sequence[Path], workers: int | None = None) -> np.ndarray:
    """(N, 2) int32 (height, width) of each file, from its header (nothing is decoded)."""
    from PIL import Image

    def size_of(path: Path) -> tuple[int, int]:
        try:
            with open_image_file(path) as stream, Image.open(stream) as image:
                check_pixels(image)
                return image.height, image.width
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, UnsafeImageFile) as error:
            raise UserError(f"cannot read the size of image {path} ({' '.join(str(error).split())[:120]}); "
                            "`bench data verify` lists every broken image") from None

    with ThreadPoolExecutor(workers or default_workers()) as pool:
        return np.array(list(pool.map(size_of, paths)), dtype=np.int32).reshape(len(paths), 2)


def _checked_sizes(entry: Path, count: int) -> np.ndarray | None:
    """The stored size index when its bytes have the sha256 its ``meta.json`` records and it
    holds ``count`` (height, width) pairs; None for a missing, planted or corrupt one."""
    try:
        raw = (entry / "sizes.npy").read_bytes()
        recorded = json.loads((entry / cache.META).read_text()).get("sha256")
        if recorded != hashlib.sha256(raw).hexdigest():
            return None
        sizes = np.load(io.BytesIO(raw), allow_pickle=False)
    except (OSError, ValueError, AttributeError):
        return None
    return sizes if sizes.dtype == np.int32 and sizes.shape == (count, 2) else None


def image_sizes(paths: Sequence[Path], name: str, key: str) -> np.ndarray:
    """``read_sizes`` kept in ``cache_root()/sizes/<name>-<key>/sizes.npy`` (8 bytes per image),
    with its sha256 in ``meta.json``: an index that does not match it is rebuilt, never trusted."""
    entry = cache.kind_folder("sizes") / f"{name}-{key}"
    data = entry / "sizes.npy"
    what = f"original sizes of {len(paths)} {name} images"
    if not data.is_file():
        cache.require_space(entry, 128 + 8 * len(paths), what)
    with cache.building(entry):
        sizes = _checked_sizes(entry, len(paths))
        if sizes is None:
            sizes = read_sizes(paths)
            buffer = io.BytesIO()
            np.save(buffer, sizes)
            cache.write_file(data, [buffer.getvalue()], buffer.tell())
            cache.write_meta(entry, what, images=len(paths), format=FORMAT,
                             sha256=hashlib.sha256(buffer.getvalue()).hexdigest())
    cache.mark_used(entry)
    return sizes


# -- sources of batches ----------------------------------------------------------------------


class ResizedImages:
    """Batches read from an (N, S, S, 3) uint8 array (the resized cache), in sorted order, which is
    faster on disk."""

    crops = False
    workers = 0

    def __init__(self, array: np.ndarray):
        self.array = array

    def __len__(self) -> int:
        return len(self.array)

    def read(self, indices: np.ndarray, boxes, pool, device):
        import torch

        ascending = np.argsort(indices, kind="stable")
        rank = np.empty_like(ascending)
        rank[ascending] = np.arange(len(indices))
        return torch.from_numpy(np.ascontiguousarray(self.array[indices[ascending]][rank]))


class DecodedImages:
    """Batches decoded from the image files, each image by a worker of a thread pool.

    With ``sizes`` (the original (height, width) of every image), every image is cut to its
    ``RandomResizedCrop`` box before the resize; without, it is resized whole, byte for byte as
    in the resized cache.
    """

    def __init__(self, paths: Sequence[Path], size: int, *, sizes: np.ndarray | None = None,
                 workers: int | None = None):
        self.paths, self.size, self.sizes = paths, size, sizes
        self.crops = sizes is not None
        self.workers = workers or default_workers()

    def __len__(self) -> int:
        return len(self.paths)

    def boxes(self, indices: np.ndarray, generator) -> np.ndarray:
        """(B, 4) int (top, left, height, width) boxes for the images ``indices``, drawn in their order."""
        return np.array([random_resized_crop_box(generator, *map(int, self.sizes[i])) for i in indices],
                        dtype=np.int64).reshape(len(indices), 4)

    def read(self, indices: np.ndarray, boxes, pool, device):
        import torch

        if boxes is not None and device is not None and device.type == "cuda":
            return self._read_on_gpu(indices, boxes, pool, device)
        out = np.empty((len(indices), self.size, self.size, 3), np.uint8)

        def fill(k: int) -> None:
            path = self.paths[indices[k]]
            out[k] = decode_resized(path, self.size) if boxes is None else decode_cropped(path, boxes[k], self.size)

        for _ in pool.map(fill, range(len(indices))):
            pass
        return torch.from_numpy(out)

    def _read_on_gpu(self, indices: np.ndarray, boxes: np.ndarray, pool, device):
        """nvJPEG decodes the batch's JPEG files on ``device`` (PIL the others, and any that nvJPEG
        refuses); ``crop_and_resize`` cuts and resizes them there."""
        import torch
        from torchvision.io import ImageReadMode, decode_jpeg

        paths = [self.paths[i] for i in indices]
        encoded = list(pool.map(lambda path: Path(path).read_bytes(), paths))
        jpegs = [k for k, data in enumerate(encoded) if data[:3] == JPEG_MAGIC]
        tensors = [torch.frombuffer(bytearray(encoded[k]), dtype=torch.uint8) for k in jpegs]
        with torch.cuda.device(device):  # this runs in the reader thread, whose current device is the first
            decoded = {}
            try:
                decoded = dict(zip(jpegs, decode_jpeg(tensors, mode=ImageReadMode.RGB, device=device)))
            except RuntimeError:  # one of them is beyond nvJPEG (CMYK, say): try each alone
                for k, tensor in zip(jpegs, tensors):
                    with contextlib.suppress(RuntimeError):
                        decoded[k] = decode_jpeg(tensor, mode=ImageReadMode.RGB, device=device)
            images = [decoded[k] if k in decoded else torch.tensor(_decode(paths[k])).permute(2, 0, 1).to(device)
                      for k in range(len(paths))]
            return crop_and_resize(images, boxes, self.size)


def crop_and_resize(images, boxes: np.ndarray, size: int):
    """Each (3, H, W) uint8 image tensor cut to its box (top, left, height, width) and resized to
    (size, size) where it lies, with antialiased bilinear interpolation; (B, S, S, 3) uint8, rounded."""
    import torch

    out = torch.empty((len(images), size, size, 3), dtype=torch.uint8, device=images[0].device)
    for k, (image, (top, left, height, width)) in enumerate(zip(images, boxes.tolist())):
        crop = image[:, top:top + height, left:left + width].unsqueeze(0).float()
        resized = torch.nn.functional.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False,
                                                  antialias=True)
        out[k] = resized[0].round_().clamp_(0, 255).permute(1, 2, 0).to(torch.uint8)
    return out


class SplitImages:
    """The images of one split at one size, and where their batches come from (``source``).

    ``name`` (dataset and split) and ``fingerprint`` name its cache entries; with
    ``cache=False`` nothing is written to disk and every batch is decoded.
    """

    def __init__(self, paths: Sequence[Path], size: int, *, name: str, fingerprint: str | None, cache: bool,
                 workers: int | None = None):
        self.paths, self.size, self.name, self.fingerprint = list(paths), size, name, fingerprint
        self.cache, self.workers = cache, workers
        self._key: str | None = None
        self._resized: ResizedImages | None = None
        self._tried_resized = False
        self._sizes: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def key(self) -> str:
        if self._key is None:
            self._key = content_key(self.paths, self.fingerprint)
        return self._key

    def source(self, input_crop: str | None):
        """The resized cache for whole images where it may be used (built on first use), else the files."""
        if input_crop == "random-resized":
            return DecodedImages(self.paths, self.size, sizes=self.original_sizes(), workers=self.workers)
        if input_crop is not None:
            raise ValueError(f"unknown input_crop {input_crop!r}")
        if self.cache and not self._tried_resized:
            self._tried_resized = True
            try:
                self._resized = ResizedImages(image_cache(self.paths, self.size, self.name, self.key, self.workers))
            except cache.NoSpace as error:
                log.info(f"{error}; decoding every batch from the image files instead (the same pixels)")
        return self._resized or DecodedImages(self.paths, self.size, workers=self.workers)

    def original_sizes(self) -> np.ndarray:
        if self._sizes is None:
            self._sizes = (image_sizes(self.paths, self.name, self.key) if self.cache
                           else read_sizes(self.paths, self.workers))
        return self._sizes


class Batches:
    """Batches of (uint8 (B, S, S, 3) images, label rows) from a source, read ahead in a thread.

    ``batches`` is the list of index arrays to read, in order. A source that crops draws each
    batch's boxes from ``crop_generator`` in that order, before decoding, so the images do not
    depend on how many workers decode them. Reading, decoding and pinning overlap the step.
    """

    def __init__(self, source, labels: np.ndarray, batches: Sequence[np.ndarray], *, pin_memory: bool = False,
                 device=None, crop_generator=None):
        if source.crops and crop_generator is None:
            raise ValueError("a cropping source needs crop_generator")
        self.source, self.labels, self.batches = source, labels, batches
        self.pin_memory, self.device, self.crop_generator = pin_memory, device, crop_generator

    def __len__(self) -> int:
        return len(self.batches)

    def _read(self, indices: np.ndarray, pool):
        import torch

        boxes = self.source.boxes(indices, self.crop_generator) if self.source.crops else None
        images = self.source.read(indices, boxes, pool, self.device)
        labels = torch.from_numpy(np.ascontiguousarray(self.labels[indices]))
        if self.pin_memory:
            labels = labels.pin_memory()
            if images.device.type == "cpu":
                images = images.pin_memory()
        return images, labels

    def __iter__(self) -> Iterator:
        slots: queue.Queue = queue.Queue(READ_AHEAD)
        stop = threading.Event()

        def produce() -> None:
            try:
                workers = self.source.workers
                with ThreadPoolExecutor(workers) if workers else contextlib.nullcontext() as pool:
                    for indices in self.batches:
                        if stop.is_set():
                            return
                        slots.put(self._read(np.asarray(indices), pool))
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


def to_model_input(images_uint8, device, channels_last: bool, *, flip=None, mean=None, std=None):
    """uint8 (B, S, S, 3) on the host (or already on ``device``) → float (B, 3, S, S) on ``device``,
    in one tensor of the model's memory format and no intermediate ones.

    ``flip`` (B bools on ``device``, from ``random_flips``) mirrors those images left to right while they are
    still uint8 (a quarter of the bytes); the permute and the conversion to float are one copy
    into the output, which is then divided by 255 and, with ``mean`` and ``std`` (from
    ``normalization``), normalised in place. Every element goes through the same float32
    operations in the same order as ``x.float() / 255``, ``flip`` and ``(x - mean) / std``
    one after the other, so the values are bit-identical to those separate steps.
    """
    import torch

    images = images_uint8.to(device, non_blocking=True)
    if flip is not None:
        images = torch.where(flip[:, None, None, None], images.flip(2), images)
    batch, size, width, channels = images.shape
    out = torch.empty((batch, channels, size, width), dtype=torch.float32, device=images.device,
                      memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    out.copy_(images.permute(0, 3, 1, 2)).div_(255)
    if mean is not None:
        out.sub_(mean).div_(std)
    return out


def random_flips(count: int, generator, device):
    """Which of ``count`` images ``RandomHorizontalFlip(p=0.5)`` flips, on ``device``: one uniform
    draw per image from ``generator``, the draws ``plugins.augmentations.random_flip`` makes.
    On a GPU they are copied from pinned memory, so that the copy does not wait for its queue."""
    import torch

    flips = torch.rand(count, generator=generator) < 0.5
    return flips.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else flips


def normalization(mean, std, device):
    """(mean, std) as (1, 3, 1, 1) tensors on ``device``: made once, so that no step copies
    from the host."""
    import torch

    return (torch.tensor(mean, device=device).view(1, 3, 1, 1), torch.tensor(std, device=device).view(1, 3, 1, 1))


def normalize(images, mean, std):
    """ImageNet mean/std normalisation with tensors from ``normalization``, as ``transforms.Normalize`` does:
    ``(images - mean) / std``, the division in place on the new tensor."""
    return (images - mean).div_(std)
