"""Training-input images/s and disk bytes of the harness's input paths, on the same JPEG files.

    python benchmarks/input_pipeline.py [--images 400] [--size 448] [--epochs 4] [--workers N] [--json PATH]

The script writes its own JPEG files (quality 90), half at VOC's 500×375 and half at COCO's
640×480, interleaved: colour fields with the 1/f amplitude spectrum of natural images
(amplitude ∝ f^-1.15, a luminance field plus two weaker chroma fields), whose files come out
at the sizes of real photos (about 100 KB and 160 KB) and decode as slowly. Every path
delivers the same kind of thing, float (16, 3, S, S) batches in the epoch's seeded order,
augmented (flip) and normalised as ``Trainer.train_epoch`` does; no model runs:

- ``old: cache + roi_align crop`` (the baseline): pipeline version 2's M2, reimplemented here
  for comparison only: the resized cache, then RandomResizedCrop boxes drawn in the image
  already squashed to (S, S), cut and resized back by ``torchvision.ops.roi_align``;
- ``exact crops, decoded per batch``: M2/M3 now, ``DecodedImages`` with crops in the original
  pixels, with one thread and with ``--workers`` threads, and (to compare threads with
  processes) with a process pool of ``--workers`` processes doing the same decoding;
- ``whole images, decoded per batch``: M1 without the resized cache (``--no-cache``);
- ``resized cache, warm`` and ``resized cache, cold``: M1 and the test split with the cache; the
  cold epochs first drop the cache file's pages (``posix_fadvise(POSIX_FADV_DONTNEED)``);
- ``uint8 images already in memory``: the resized images in RAM, so that only the part every
  path shares is timed (uint8 to float, flip, normalise): the ceiling of any path here.

Each path is timed twice per round: its uint8 batches alone (what the host delivers when the
model trains on a GPU, where the float conversion, crop of the old path, flip and
normalisation run on the device) and the whole CPU training input. After one untimed round,
each timed round runs every path once, in this order (the cache file is read through once,
untimed, at the start of each round); images/s are medians over the rounds, and each ratio is
the median of the per-round ratios to the baseline in the same round.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tabulate import tabulate

from harness import pipeline
from harness.protocol import IMAGENET_MEAN, IMAGENET_STD
from harness.train import epoch_generator
from plugins.augmentations import augment_flip

VOC_SHAPE = (500, 375)  # width, height of most VOC 2007 images
COCO_SHAPE = (640, 480)  # of most COCO 2014 images
CLASSES = 20
BATCH = 16
SPECTRUM_EXPONENT = 1.15


def natural_image(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """(height, width, 3) uint8 colour noise with a 1/f^1.15 amplitude spectrum, the statistics of natural images."""
    fy, fx = np.fft.fftfreq(height)[:, None], np.fft.rfftfreq(width)[None, :]
    frequency = np.hypot(fx, fy)
    frequency[0, 0] = 1 / max(width, height)

    def field() -> np.ndarray:
        noise = rng.normal(size=frequency.shape) + 1j * rng.normal(size=frequency.shape)
        spectrum = noise / frequency ** SPECTRUM_EXPONENT
        values = np.fft.irfft2(spectrum, s=(height, width))
        return (values - values.mean()) / values.std()

    luminance, red_green, blue_yellow = field(), field(), field()
    rgb = np.stack([luminance + 0.35 * red_green, luminance - 0.2 * red_green + 0.2 * blue_yellow,
                    luminance - 0.35 * blue_yellow], axis=-1)
    return np.clip(118 + 48 * rgb, 0, 255).astype(np.uint8)


def write_jpegs(folder: Path, count: int, seed: int = 0, shape: tuple[int, int] | None = None) -> list[Path]:
    """``count`` JPEG files (quality 90) of ``natural_image``: all of ``shape`` (width, height) if given,
    else alternately 500×375 and 640×480."""
    folder.mkdir(parents=True, exist_ok=True)

    def write(index: int) -> Path:
        width, height = shape or (VOC_SHAPE, COCO_SHAPE)[index % 2]
        path = folder / f"{index:06d}.jpg"
        Image.fromarray(natural_image(width, height, np.random.default_rng([seed, index]))).save(path, quality=90)
        return path

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        return list(pool.map(write, range(count)))


def random_labels(count: int, seed: int = 0, classes: int = CLASSES) -> np.ndarray:
    """(count, classes) float32 multi-hot rows; with 20 classes about 1.5 positives per image, like VOC."""
    return (np.random.default_rng(seed).random((count, classes)) < 0.075).astype(np.float32)


def old_crop(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Pipeline 2's M2 crop, for comparison only: RandomResizedCrop boxes (10 tries, else the whole
    image, as for any square image) drawn in the (S, S) image, cut and resized back by roi_align."""
    from torchvision.ops import roi_align

    batch, _, height, width = images.shape
    area = height * width * torch.empty(batch, 10).uniform_(0.08, 1.0, generator=generator)
    aspect = torch.exp(torch.empty(batch, 10).uniform_(math.log(3 / 4), math.log(4 / 3), generator=generator))
    w, h = torch.round(torch.sqrt(area * aspect)), torch.round(torch.sqrt(area / aspect))
    fits = (w <= width) & (h <= height)
    first, rows, fit = fits.int().argmax(dim=1), torch.arange(batch), fits.any(dim=1)
    w = torch.where(fit, w[rows, first], torch.tensor(float(width)))
    h = torch.where(fit, h[rows, first], torch.tensor(float(height)))
    top = torch.floor(torch.rand(batch, generator=generator) * (height - h + 1))
    left = torch.floor(torch.rand(batch, generator=generator) * (width - w + 1))
    rois = torch.stack([rows.float(), left, top, left + w, top + h], dim=1)
    return roi_align(images, rois, output_size=(height, width), spatial_scale=1.0, sampling_ratio=1, aligned=True)


class ProcessDecoded(pipeline.DecodedImages):
    """``DecodedImages`` with crops, decoded by a process pool instead of threads (comparison only)."""

    def __init__(self, paths, size, sizes, pool: ProcessPoolExecutor):
        super().__init__(paths, size, sizes=sizes)
        self.process_pool, self.workers = pool, 0

    def read(self, indices, boxes, pool, device):
        paths = [self.paths[i] for i in indices]
        images = self.process_pool.map(pipeline.decode_cropped, paths, boxes.tolist(), [self.size] * len(paths))
        return torch.from_numpy(np.stack(list(images)))


def epoch(source, labels: np.ndarray, epoch_index: int, seed: int, crop=None, tail: bool = True) -> int:
    """One epoch of training input from ``source``, as the trainer makes it on a CPU (with ``tail``: to
    float, ``crop`` if given, flip, normalise), or only its uint8 batches (what the host delivers
    on a GPU, where the rest runs on the device); returns the images delivered."""
    order = torch.randperm(len(labels), generator=epoch_generator(seed, epoch_index, 0)).numpy()
    chunks = [order[i:i + BATCH] for i in range(0, len(order), BATCH)]
    augment_generator = epoch_generator(seed, epoch_index, 1)
    device = torch.device("cpu")
    mean, std = pipeline.normalization(IMAGENET_MEAN, IMAGENET_STD, device)
    seen = 0
    for images_uint8, targets in pipeline.Batches(source, labels, chunks,
                                                  crop_generator=epoch_generator(seed, epoch_index, 2)):
        if not tail:
            seen += len(images_uint8)
            continue
        images = pipeline.to_model_input(images_uint8, device, channels_last=False)
        if crop is not None:
            images = crop(images, augment_generator)
        images, targets = augment_flip(images, targets, epoch_index, augment_generator)
        seen += len(pipeline.normalize(images, mean, std))
    return seen


def read_through(path: Path) -> None:
    """Read the whole file once, so that its pages are in memory."""
    with open(path, "rb") as stream:
        while stream.read(1 << 24):
            pass


def drop_pages(path: Path) -> None:
    """Ask the kernel to forget the file's cached pages (they were written and synced already)."""
    with open(path, "rb") as stream:
        os.posix_fadvise(stream.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def machine() -> dict:
    """The host, its load, and the OpenMP settings that decide how torch's threads behave on a busy machine."""
    return {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "torch": torch.__version__, "pillow": Image.__version__,
            "torch_threads": torch.get_num_threads(), "load_average_at_start": list(os.getloadavg()),
            "env": {key: os.environ.get(key) for key in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}}


def measure(args, workdir: Path) -> dict:
    """Writes the files, builds the cache, times the rounds; returns the JSON record."""
    host_machine = machine()
    start = time.perf_counter()
    paths = write_jpegs(workdir / "jpeg", args.images, args.seed)
    write_seconds = time.perf_counter() - start
    jpeg_bytes = [p.stat().st_size for p in paths]
    labels = random_labels(args.images, args.seed)
    os.environ["BENCH_CACHE_DIR"] = str(workdir / "cache")
    key = pipeline.content_key(paths)
    start = time.perf_counter()
    pipeline.image_cache(paths, args.size, "input-benchmark", key, workers=args.workers)
    build_seconds = time.perf_counter() - start
    (cache_file,) = (workdir / "cache" / "images").glob("*/images.npy")
    sizes = pipeline.image_sizes(paths, "input-benchmark", key)
    (sizes_file,) = (workdir / "cache" / "sizes").glob("*/sizes.npy")

    in_memory = pipeline.ResizedImages(np.array(np.load(cache_file, mmap_mode="r")))

    def cached(cold: bool):
        if cold:
            drop_pages(cache_file)
        return pipeline.ResizedImages(np.load(cache_file, mmap_mode="r"))

    with ProcessPoolExecutor(args.workers) as processes:
        processes.submit(int).result()  # started before timing
        sources = {
            "in_memory": (lambda: in_memory, None),
            "old": (lambda: cached(False), old_crop),
            "crops_1_thread": (lambda: pipeline.DecodedImages(paths, args.size, sizes=sizes, workers=1), None),
            "crops_threads": (lambda: pipeline.DecodedImages(paths, args.size, sizes=sizes, workers=args.workers),
                              None),
            "crops_processes": (lambda: ProcessDecoded(paths, args.size, sizes, processes), None),
            "whole_threads": (lambda: pipeline.DecodedImages(paths, args.size, workers=args.workers), None),
            "cache_warm": (lambda: cached(False), None),
            "cache_cold": (lambda: cached(True), None),
        }
        rates = {(name, tail): [] for name in sources for tail in (False, True)}
        for round_index in range(args.epochs + 1):
            read_through(cache_file)
            for (name, tail), values in rates.items():
                make_source, crop = sources[name]
                source = make_source()
                start = time.perf_counter()
                count = epoch(source, labels, round_index, args.seed, crop=crop, tail=tail)
                if round_index:  # the first round warms up
                    values.append(count / (time.perf_counter() - start))
                del source  # unmapped, so that the next cold epoch's pages can be dropped
    cache_bytes = cache_file.stat().st_size
    sizes_bytes = sizes_file.stat().st_size
    disk = {"in_memory": 0, "old": cache_bytes, "crops_1_thread": sizes_bytes, "crops_threads": sizes_bytes,
            "crops_processes": sizes_bytes, "whole_threads": 0, "cache_warm": cache_bytes, "cache_cold": cache_bytes}
    results = {}
    for name in sources:
        host, cpu = rates[name, False], rates[name, True]
        results[name] = {
            "uint8_images_per_s": statistics.median(host), "epoch_uint8_images_per_s": host,
            "uint8_ratio_to_old": statistics.median([v / b for v, b in zip(host, rates["old", False])]),
            "images_per_s": statistics.median(cpu), "epoch_images_per_s": cpu,
            "ratio_to_old": statistics.median([v / b for v, b in zip(cpu, rates["old", True])]),
            "disk_bytes": disk[name], "disk_bytes_per_image": disk[name] / args.images,
        }
    return {
        "benchmark": "input_pipeline",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {**host_machine, "load_average_at_end": list(os.getloadavg())},
        "settings": {"images": args.images, "jpeg_shapes": [list(VOC_SHAPE), list(COCO_SHAPE)], "size": args.size,
                     "batch": BATCH, "timed_epochs": args.epochs, "workers": args.workers, "seed": args.seed,
                     "cold_pages": "posix_fadvise(POSIX_FADV_DONTNEED) on the cache file before each cold epoch"},
        "jpeg": {"mean_bytes": statistics.mean(jpeg_bytes), "total_bytes": sum(jpeg_bytes),
                 "mean_bytes_500x375": statistics.mean(jpeg_bytes[0::2]),
                 "mean_bytes_640x480": statistics.mean(jpeg_bytes[1::2]) if len(jpeg_bytes) > 1 else None},
        "write_jpegs_seconds": write_seconds,
        "cache_build": {"seconds": build_seconds, "images_per_s": args.images / build_seconds, "bytes": cache_bytes},
        "paths": results,
    }


LABELS = {
    "in_memory": "uint8 images already in memory (a ceiling: no disk, no decoding)",
    "old": "old: cache + roi_align crop on the S x S image (baseline)",
    "crops_1_thread": "exact crops, decoded per batch, 1 thread",
    "crops_threads": "exact crops, decoded per batch, {w} threads",
    "crops_processes": "exact crops, decoded per batch, {w} processes",
    "whole_threads": "whole images, decoded per batch, {w} threads (M1 --no-cache)",
    "cache_warm": "resized cache, warm (M1, test split)",
    "cache_cold": "resized cache, cold (pages dropped)",
}


def print_table(record: dict) -> None:
    settings, jpeg = record["settings"], record["jpeg"]
    workers = settings["workers"]
    rows = [(LABELS[name].format(w=workers), f"{r['uint8_images_per_s']:.0f}", f"{r['uint8_ratio_to_old']:.2f}",
             f"{r['images_per_s']:.0f}", f"{r['ratio_to_old']:.2f}", f"{r['disk_bytes_per_image']:,.0f}")
            for name, r in record["paths"].items()]
    print(f"{settings['images']} JPEGs, 500x375 and 640x480 (mean {jpeg['mean_bytes'] / 1000:.1f} KB) -> "
          f"{settings['size']}px, batch {settings['batch']}, median of {settings['timed_epochs']} timed epochs, "
          f"load average {record['machine']['load_average_at_start'][0]:.1f} at the start")
    print(tabulate(rows, headers=["path", "uint8 img/s", "ratio", "CPU input img/s", "ratio", "disk bytes/image"],
                   colalign=("left", "right", "right", "right", "right", "right"), disable_numparse=True))
    build = record["cache_build"]
    print(f"uint8: the batches alone (the host's part on a GPU); CPU input: with the float tail on this CPU. "
          f"Resized cache build: {build['seconds']:.1f} s ({build['images_per_s']:.0f} images/s), "
          f"{build['bytes']:,} bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400, help="JPEG files to write and read")
    parser.add_argument("--size", type=int, default=448, help="square input size S")
    parser.add_argument("--epochs", type=int, default=4, help="timed rounds (after one warm-up round)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="decoding threads or processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="where the files go (default: a temporary folder)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()
    if args.images < BATCH or args.epochs < 1 or args.workers < 1:
        parser.error(f"need --images >= {BATCH}, --epochs >= 1 and --workers >= 1")
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="input-benchmark-", dir=args.workdir) as folder:
        record = measure(args, Path(folder))
    print_table(record)
    if args.json:
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
