"""Training-input images/s: decoding the JPEG files every epoch against the harness's decoded-image cache.

    python benchmarks/input_pipeline.py [--images 2000] [--size 224] [--epochs 3] [--json PATH]

Both paths deliver the same thing, float (B, 3, S, S) batches, resized like ``Resize((S, S))``,
randomly flipped and normalised, from the same JPEG files (written by this script: random,
smooth-with-grain content at VOC's 500×375):

- ``decode each epoch``: a torch DataLoader with one worker per core, each opening the file
  with PIL and applying torchvision's ``Resize((S, S))``, ``RandomHorizontalFlip``,
  ``ToTensor`` and ``Normalize`` per image, as a plain ImageFolder-style pipeline does;
- ``harness cache``: ``pipeline.image_cache`` decodes every file once into a uint8 memory
  map (its build time is reported apart), then each epoch reads ``pipeline.Batches`` from it
  and runs ``to_model_input``, ``augment_flip`` and ``normalize`` on whole batches, as
  ``Trainer.train_epoch`` does.

No model runs: this times the input pipeline alone. After one untimed warm-up epoch of each,
the timed epochs alternate between the two paths so that both see the same background load;
the ratio is the median of the per-epoch-pair ratios. On a machine other jobs keep busy,
torch's spinning OpenMP threads can slow the cache path many times over; benchmarks/README.md
shows the effect and ``OMP_WAIT_POLICY=PASSIVE`` avoids it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tabulate import tabulate
from torchvision import transforms

from harness import pipeline
from harness.protocol import IMAGENET_MEAN, IMAGENET_STD
from harness.train import epoch_generator
from plugins.augmentations import augment_flip

VOC_SHAPE = (500, 375)  # width, height of most VOC 2007 images
CLASSES = 20


def write_jpegs(folder: Path, count: int, seed: int = 0, shape: tuple[int, int] = VOC_SHAPE) -> list[Path]:
    """``count`` JPEG files (quality 90) of smooth random colour fields plus grain.

    Pure noise would compress to unusually large files that decode slowly and flatter a cache;
    a bicubic blow-up of a 16×12 random image with mild grain gives ~60 KB files instead.
    """
    folder.mkdir(parents=True, exist_ok=True)
    width, height = shape

    def write(index: int) -> Path:
        rng = np.random.default_rng([seed, index])
        small = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
        field = np.asarray(small.resize((width, height), Image.BICUBIC), dtype=np.int16)
        grain = rng.integers(-14, 15, field.shape, dtype=np.int16)
        path = folder / f"{index:06d}.jpg"
        Image.fromarray(np.clip(field + grain, 0, 255).astype(np.uint8)).save(path, quality=90)
        return path

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        return list(pool.map(write, range(count)))


def random_labels(count: int, seed: int = 0, classes: int = CLASSES) -> np.ndarray:
    """(count, classes) float32 multi-hot rows; with 20 classes about 1.5 positives per image, like VOC."""
    return (np.random.default_rng(seed).random((count, classes)) < 0.075).astype(np.float32)


class JpegFiles:
    """A map-style dataset: (transformed image, label row) read from a JPEG file per item."""

    def __init__(self, paths: list[Path], labels: np.ndarray, transform):
        self.paths, self.labels, self.transform = paths, labels, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        with Image.open(self.paths[index]) as image:
            return self.transform(image.convert("RGB")), self.labels[index]


def decoding_loader(paths: list[Path], labels: np.ndarray, size: int, batch: int, workers: int, seed: int):
    """The ImageFolder-style baseline: per-image torchvision transforms in DataLoader workers."""
    transform = transforms.Compose([
        transforms.Resize((size, size), interpolation=transforms.InterpolationMode.BILINEAR),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])
    return torch.utils.data.DataLoader(
        JpegFiles(paths, labels, transform), batch_size=batch, shuffle=True, num_workers=workers,
        persistent_workers=workers > 0, generator=torch.Generator().manual_seed(seed),
    )


def cache_epoch(images: np.ndarray, labels: np.ndarray, batch: int, epoch: int, seed: int) -> int:
    """One epoch of the harness's CPU training input; returns the number of images delivered."""
    order = torch.randperm(len(images), generator=epoch_generator(seed, epoch, 0)).numpy()
    chunks = [order[i:i + batch] for i in range(0, len(order), batch)]
    flips = epoch_generator(seed, epoch, 1)
    device = torch.device("cpu")
    mean, std = pipeline.normalization(IMAGENET_MEAN, IMAGENET_STD, device)
    seen = 0
    for images_uint8, targets in pipeline.Batches(images, labels, chunks):
        model_input = pipeline.to_model_input(images_uint8, device, channels_last=False)
        model_input, targets = augment_flip(model_input, targets, epoch, flips)
        seen += len(pipeline.normalize(model_input, mean, std))
    return seen


def loader_epoch(loader) -> int:
    return sum(len(images) for images, _ in loader)


def timed(function) -> tuple[int, float]:
    start = time.perf_counter()
    count = function()
    return count, time.perf_counter() - start


def machine() -> dict:
    """The host, and the OpenMP settings that decide how torch's threads behave on a busy machine."""
    return {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "env": {key: os.environ.get(key) for key in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}}


def measure(args, workdir: Path) -> dict:
    """Writes the files, builds the cache, times the epochs; returns the JSON record."""
    workers = args.workers or os.cpu_count() or 1
    start = time.perf_counter()
    paths = write_jpegs(workdir / "jpeg", args.images, args.seed)
    write_seconds = time.perf_counter() - start
    mean_kb = statistics.mean(p.stat().st_size for p in paths) / 1000
    labels = random_labels(args.images, args.seed)

    loader = decoding_loader(paths, labels, args.size, args.batch, workers, args.seed)
    loader_epoch(loader)
    decode_rates, cache_rates = [], []
    with tempfile.TemporaryDirectory(prefix="cache-", dir=workdir) as cache_dir:
        os.environ["BENCH_CACHE_DIR"] = cache_dir
        start = time.perf_counter()
        cached = pipeline.image_cache(paths, args.size, "input-benchmark")
        build_seconds = time.perf_counter() - start
        cache_epoch(cached, labels, args.batch, 0, args.seed)
        for epoch in range(1, args.epochs + 1):
            count, seconds = timed(lambda: loader_epoch(loader))
            decode_rates.append(count / seconds)
            count, seconds = timed(lambda: cache_epoch(cached, labels, args.batch, epoch, args.seed))
            cache_rates.append(count / seconds)
        del cached
    ratios = [c / d for c, d in zip(cache_rates, decode_rates)]
    decode_rate, cache_rate = statistics.median(decode_rates), statistics.median(cache_rates)
    saved_per_epoch = args.images / decode_rate - args.images / cache_rate
    return {
        "benchmark": "input_pipeline",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine(),
        "settings": {"images": args.images, "jpeg_shape": list(VOC_SHAPE), "jpeg_mean_kb": round(mean_kb, 1),
                     "size": args.size, "batch": args.batch, "timed_epochs": args.epochs, "workers": workers,
                     "seed": args.seed},
        "write_jpegs_seconds": write_seconds,
        "decode_each_epoch": {"images_per_s": decode_rate, "epoch_images_per_s": decode_rates},
        "harness_cache": {"images_per_s": cache_rate, "epoch_images_per_s": cache_rates,
                          "build_seconds": build_seconds, "build_images_per_s": args.images / build_seconds},
        "ratio": statistics.median(ratios),
        "epoch_ratios": ratios,
        "break_even_epochs": build_seconds / saved_per_epoch if saved_per_epoch > 0 else None,
    }


def print_table(record: dict) -> None:
    decode, cache = record["decode_each_epoch"], record["harness_cache"]
    rows = [
        ("decode each epoch (DataLoader, torchvision transforms)", f"{decode['images_per_s']:.0f}", "1.00"),
        ("harness cache (Batches over memmap, batch ops)", f"{cache['images_per_s']:.0f}", f"{record['ratio']:.2f}"),
        ("  cache build, once", f"{cache['build_images_per_s']:.0f}", f"({cache['build_seconds']:.1f} s)"),
    ]
    settings = record["settings"]
    print(f"{settings['images']} JPEGs {settings['jpeg_shape'][0]}x{settings['jpeg_shape'][1]} "
          f"(mean {settings['jpeg_mean_kb']} KB) -> {settings['size']}px, batch {settings['batch']}, "
          f"{settings['workers']} workers, {record['machine']['torch_threads']} torch threads, "
          f"median of {settings['timed_epochs']} timed epochs")
    print(tabulate(rows, headers=["path", "images/s", "ratio"], colalign=("left", "right", "right"),
                   disable_numparse=True))
    if record["break_even_epochs"] is None:
        print("the cached epochs were not faster here, so the cache build never pays for itself")
    else:
        print(f"the cache build pays for itself after {record['break_even_epochs']:.2f} epochs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="JPEG files to write and read")
    parser.add_argument("--size", type=int, default=224, help="square input size S")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs of each path (after one warm-up each)")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: one per core)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="where the files go (default: a temporary folder)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()
    if args.images < args.batch or args.epochs < 1:
        parser.error("need --images >= --batch and --epochs >= 1")

    if args.workdir is None:
        with tempfile.TemporaryDirectory(prefix="input-benchmark-") as folder:
            record = measure(args, Path(folder))
    else:
        args.workdir.mkdir(parents=True, exist_ok=True)
        record = measure(args, args.workdir)
    print_table(record)
    if args.json:
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
