"""Images/s of ``bench data verify``'s decoding: the old thread pool, the new one, worker processes.

    python benchmarks/verify_speed.py [--images 3000] [--rounds 3] [--workers N] [--json PATH]

Writes ``--images`` JPEGs (quality 90, half at VOC's 500×375, half at COCO's 640×480, smooth
random colour fields with grain, ~80 KB like photographs) and a manifest naming them, then
decodes all of them with each path, in the same process, in alternating order over
``--rounds`` timed rounds after one untimed warm-up round (files come from the page cache):

- ``old``: the decoding ``harness.verify`` did before, copied here: a ``ThreadPoolExecutor``
  of ``os.cpu_count()`` threads, one task per image, over a check that hashes with BLAKE2b
  and always converts to RGB (a copy for RGB images);
- ``one core``: today's ``check_image`` on each image in turn, for reference;
- ``new``: today's ``harness.verify._decode_all``: ``--workers`` threads taking chunks of
  files, today's ``check_image`` (SHA-256, no copy for RGB images). Pillow releases the GIL
  while it decodes, so the threads run on every core;
- ``processes``: the same chunks and check on a ``ProcessPoolExecutor`` of ``--workers``
  processes (forkserver), the alternative ``harness.verify`` does not use because it was not
  faster here.

The ratio is the median over rounds of (path's img/s / old img/s) within the round, so that
both see the same background load. It also checks that ``verify`` reports exactly the
same with one thread as with ``--workers``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tabulate import tabulate

from harness import verify as verify_module
from harness.machine import usable_cores
from plugins.datasets.manifest import MANIFEST, load

SHAPES = ((500, 375), (640, 480))  # width, height


def write_jpegs(folder: Path, count: int) -> list[str]:
    """``count`` JPEGs: a bicubic blow-up of a 12×16 random image with mild grain."""
    folder.mkdir(parents=True, exist_ok=True)

    def write(index: int) -> str:
        width, height = SHAPES[index % 2]
        rng = np.random.default_rng(index)
        small = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
        field = np.asarray(small.resize((width, height), Image.BICUBIC), dtype=np.int16)
        grain = rng.integers(-14, 15, field.shape, dtype=np.int16)
        name = f"{index:06d}.jpg"
        Image.fromarray(np.clip(field + grain, 0, 255).astype(np.uint8)).save(folder / name, quality=90)
        return name

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        return list(pool.map(write, range(count)))


def old_check_image(path):
    """``harness.verify.check_image`` as it was before worker processes."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return None, "image file not found"
    except OSError as error:
        return None, f"cannot read: {error.strerror or error}"
    digest = hashlib.blake2b(data, digest_size=16).digest()
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.convert("RGB")
    except UnidentifiedImageError:
        return digest, "cannot decode: not an image format Pillow reads"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        return digest, f"cannot decode: {error}"
    return digest, None


def old_decode(paths):
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return list(pool.map(old_check_image, paths))


def on_processes(paths, workers):
    context = multiprocessing.get_context("forkserver")
    chunks = [paths[start:start + verify_module.CHUNK] for start in range(0, len(paths), verify_module.CHUNK)]
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        return [result for chunk in pool.map(verify_module.check_images, chunks) for result in chunk]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=usable_cores(), help="threads (or processes) of the new paths")
    parser.add_argument("--workdir", type=Path, help="where the JPEGs go (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    arguments = parser.parse_args()
    temporary = None if arguments.workdir else tempfile.TemporaryDirectory(prefix="verify-speed-")
    workdir = arguments.workdir or Path(temporary.name)
    names = write_jpegs(workdir / "images", arguments.images)
    with (workdir / "manifest.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "labels", "split"])
        writer.writerows((f"images/{name}", "a|b" if i % 3 else "c", "train" if i % 2 else "test")
                         for i, name in enumerate(names))
    dataset = load(workdir / "manifest.csv", {})
    paths = [os.fspath(p) for split in dataset.splits.values() for p in split.image_paths]
    megabytes = sum(os.path.getsize(p) for p in paths) / 1e6
    variants = {
        "old": lambda: old_decode(paths),
        "one core": lambda: verify_module.check_images(paths),
        "new": lambda: verify_module._decode_all(dataset, False, arguments.workers),
        "processes": lambda: on_processes(paths, arguments.workers),
    }
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for round_number in range(arguments.rounds + 1):
        order = list(variants)[round_number % len(variants):] + list(variants)[:round_number % len(variants)]
        for name in order:
            started = time.perf_counter()
            variants[name]()
            if round_number:  # round 0 warms the page cache
                rates[name].append(len(paths) / (time.perf_counter() - started))
    ratios = {name: statistics.median(r / o for r, o in zip(rates[name], rates["old"])) for name in variants}
    same = (verify_module.verify(dataset, MANIFEST, progress=False, workers=1)
            == verify_module.verify(dataset, MANIFEST, progress=False, workers=arguments.workers))
    record = {
        "benchmark": "verify_speed",
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": {"cpu_count": os.cpu_count(), "cores_usable": usable_cores(),
                    "processor": platform.processor() or platform.machine(), "python": platform.python_version(),
                    "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None},
        "settings": {"images": len(paths), "megabytes": round(megabytes, 1), "rounds": arguments.rounds,
                     "workers": arguments.workers},
        "images_per_s": {name: {"median": statistics.median(r), "rounds": r} for name, r in rates.items()},
        "ratio_to_old": ratios,
        "reports_identical": same,
    }
    rows = [(name, statistics.median(rates[name]), ratios[name]) for name in variants]
    print(f"{len(paths)} JPEGs, {megabytes:.0f} MB, {arguments.rounds} rounds, {arguments.workers} threads or processes")
    print(tabulate(rows, headers=["path", "img/s (median)", "× old"], floatfmt=".2f"))
    print(f"same report with 1 thread and {arguments.workers}: {'yes' if same else 'NO'}")
    if arguments.json:
        arguments.json.write_text(json.dumps(record, indent=2))
    if temporary:
        temporary.cleanup()
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
