"""``shapes``: the embedded default dataset, synthetic and generated on first use.

Ten shape classes drawn 1–4 at a time at different scales, positions, rotations and
colours, on cluttered, noisy backgrounds. Some classes co-occur far more often than others
(ring with circle, cross with square, crescent with star), as objects do in real photos.
Every image is a pure function of (dataset version, split, index), so the data, and hence
its fingerprint, are the same on every machine. PNG files are written once into the cache
folder (``harness.cache.cache_root()/shapes/v1``), never into the source tree.
"""

from __future__ import annotations

import csv
import math
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from harness import Dataset, DatasetSpec, Split
from harness.cache import cache_root
from harness.files import atomic_folder

VERSION = "1"
CLASSES = ("circle", "square", "triangle", "diamond", "hexagon", "star", "cross", "ring", "crescent", "bar")
BASE_FREQUENCY = np.array([1.4, 1.2, 1.0, 0.8, 0.7, 0.9, 0.8, 0.6, 0.5, 1.1])
PARTNERS = {"ring": "circle", "circle": "ring", "cross": "square", "square": "cross", "crescent": "star", "star": "crescent"}
SPLIT_SIZES = {"train": 4000, "test": 1000}
IMAGE_SIZE = 96
SEED = 20190922


def _polygon(center, radius, sides, rotation, inner=None):
    points = []
    for k in range(sides * (2 if inner else 1)):
        angle = rotation + math.pi * k / (sides if inner else sides / 2)
        r = radius if not inner or k % 2 == 0 else radius * inner
        points.append((center[0] + r * math.cos(angle), center[1] + r * math.sin(angle)))
    return points


def _draw_shape(draw, name, center, radius, rotation):
    """Draw class ``name`` as white on an 'L' mask (black = background)."""
    x, y = center
    box = (x - radius, y - radius, x + radius, y + radius)
    if name == "circle":
        draw.ellipse(box, fill=255)
    elif name == "ring":
        draw.ellipse(box, outline=255, width=max(2, int(radius * 0.3)))
    elif name == "square":
        draw.polygon(_polygon(center, radius * 1.2, 4, rotation), fill=255)
    elif name == "diamond":
        points = [(x, y - radius), (x + radius * 0.6, y), (x, y + radius), (x - radius * 0.6, y)]
        draw.polygon(points, fill=255)
    elif name == "triangle":
        draw.polygon(_polygon(center, radius * 1.1, 3, rotation), fill=255)
    elif name == "hexagon":
        draw.polygon(_polygon(center, radius, 6, rotation), fill=255)
    elif name == "star":
        draw.polygon(_polygon(center, radius * 1.2, 5, rotation, inner=0.45), fill=255)
    elif name == "cross":
        arm = radius * 0.35
        for angle in (rotation, rotation + math.pi / 2):
            dx, dy = math.cos(angle), math.sin(angle)
            px, py = -dy * arm, dx * arm
            draw.polygon(
                [(x - dx * radius + px, y - dy * radius + py), (x + dx * radius + px, y + dy * radius + py),
                 (x + dx * radius - px, y + dy * radius - py), (x - dx * radius - px, y - dy * radius - py)],
                fill=255,
            )
    elif name == "crescent":
        draw.ellipse(box, fill=255)
        shift = radius * 0.55
        dx, dy = shift * math.cos(rotation), shift * math.sin(rotation)
        draw.ellipse((box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy), fill=0)
    elif name == "bar":
        dx, dy = math.cos(rotation) * radius * 1.3, math.sin(rotation) * radius * 1.3
        draw.line((x - dx, y - dy, x + dx, y + dy), fill=255, width=max(2, int(radius * 0.3)))


def _sample_classes(rng: np.random.Generator) -> list[int]:
    count = rng.choice([1, 2, 3, 4], p=[0.3, 0.3, 0.25, 0.15])
    probabilities = BASE_FREQUENCY / BASE_FREQUENCY.sum()
    chosen = [int(rng.choice(len(CLASSES), p=probabilities))]
    while len(chosen) < count:
        partner = PARTNERS.get(CLASSES[chosen[-1]])
        if partner and rng.random() < 0.6:
            chosen.append(CLASSES.index(partner))
        else:
            chosen.append(int(rng.choice(len(CLASSES), p=probabilities)))
    return chosen


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray) -> tuple[int, int, int]:
    """A random colour at least 150 away (L1) from the background's base colour, so that every
    object is visible; the colour says nothing about the class."""
    while True:
        colour = rng.integers(0, 256, size=3)
        if np.abs(colour - background).sum() >= 150:
            return tuple(int(c) for c in colour)


def _scene(split: str, index: int):
    """The random draws of image ``index`` up to its classes: (generator, background base colour,
    tilt, clutter, classes). Drawing pixels continues with the same generator."""
    rng = np.random.default_rng([SEED, ["train", "test"].index(split), index])
    base = rng.uniform(40, 200, size=3)
    tilt = rng.uniform(-60, 60, size=(2, 3))
    clutter = []
    for _ in range(rng.integers(2, 7)):
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        x0, y0, x1, y1 = rng.uniform(0, IMAGE_SIZE, size=4)
        radius = None if rng.random() < 0.5 else rng.uniform(1, 3)
        clutter.append((colour, (x0, y0, x1, y1), radius))
    return rng, base, tilt, clutter, _sample_classes(rng)


def image_classes(split: str, index: int) -> list[int]:
    """The class indices present in image ``index`` of ``split``, without drawing it."""
    return sorted(set(_scene(split, index)[4]))


def render(split: str, index: int):
    """Image ``index`` of ``split`` as (PIL RGB image, list of class indices present)."""
    from PIL import Image, ImageDraw

    rng, base, tilt, clutter, classes = _scene(split, index)
    size = IMAGE_SIZE
    yy, xx = np.mgrid[0:size, 0:size] / size
    background = base + xx[..., None] * tilt[0] + yy[..., None] * tilt[1]
    canvas = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for colour, (x0, y0, x1, y1), r in clutter:
        if r is None:
            draw.line((x0, y0, x1, y1), fill=colour, width=1)
        else:
            draw.ellipse((x0 - r, y0 - r, x0 + r, y0 + r), fill=colour)
    placed: list[tuple[np.ndarray, float]] = []
    for class_index in classes:
        radius = size * (rng.uniform(0.08, 0.12) if rng.random() < 0.25 else rng.uniform(0.14, 0.26))
        for _ in range(20):  # objects may touch but not hide each other
            center = rng.uniform(radius, size - radius, size=2)
            if all(np.hypot(*(center - c)) > 0.8 * (radius + r) for c, r in placed):
                break
        placed.append((center, radius))
        mask = Image.new("L", (size, size), 0)
        _draw_shape(ImageDraw.Draw(mask), CLASSES[class_index], center, radius, rng.uniform(0, 2 * math.pi))
        canvas.paste(Image.new("RGB", (size, size), _contrasting_colour(rng, base)), mask=mask)
    pixels = np.asarray(canvas, dtype=np.float32) + rng.normal(0, 10, size=(size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)), sorted(set(classes))


def generate(folder: Path, workers: int | None = None) -> None:
    """Write every image and ``labels.csv`` into ``folder`` (atomically: a temporary folder, then a
    rename). A staging folder left by an interrupted generation is removed first."""
    from filelock import FileLock

    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if (folder / "labels.csv").is_file():
            return
        for orphan in folder.parent.glob(f".{folder.name}.*"):
            shutil.rmtree(orphan, ignore_errors=True)
        with atomic_folder(folder) as staging:
            _write_images(staging, workers)


def _write_images(staging: Path, workers: int | None) -> None:
    """Every image of every split and ``labels.csv`` into ``staging``."""
    from harness.progress import bar

    jobs = [(split, i) for split, n in SPLIT_SIZES.items() for i in range(n)]
    for split in SPLIT_SIZES:
        (staging / split).mkdir()

    def write(job):
        split, index = job
        image, classes = render(split, index)
        image_id = f"{split}{index:05d}"
        image.save(staging / split / f"{image_id}.png", optimize=False)
        return split, image_id, classes

    with ThreadPoolExecutor(workers or os.cpu_count()) as pool:
        rows = list(bar(pool.map(write, jobs), total=len(jobs), desc="generating shapes", unit="img"))
    with open(staging / "labels.csv", "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["split", "id", *CLASSES])
        for split, image_id, classes in rows:
            writer.writerow([split, image_id, *(int(c in classes) for c in range(len(CLASSES)))])


def load(data_root: Path | None = None, options: dict | None = None) -> Dataset:
    """Generate (once) and read the dataset from the cache folder. ``bench`` passes no
    ``data_root`` (``takes_data_root=False``); tests pass one to generate elsewhere."""
    folder = Path(data_root) if data_root else cache_root() / "shapes" / f"v{VERSION}"
    if not (folder / "labels.csv").is_file():
        generate(folder)
    ids: dict[str, list[str]] = {split: [] for split in SPLIT_SIZES}
    rows: dict[str, list[list[int]]] = {split: [] for split in SPLIT_SIZES}
    with open(folder / "labels.csv", newline="") as stream:
        reader = csv.reader(stream)
        next(reader)
        for split, image_id, *values in reader:
            ids[split].append(image_id)
            rows[split].append([int(v) for v in values])
    splits = {
        split: Split(
            ids=ids[split],
            image_paths=[folder / split / f"{i}.png" for i in ids[split]],
            labels=np.array(rows[split], dtype=np.int8),
        )
        for split in SPLIT_SIZES
    }
    return Dataset(name="shapes", classes=CLASSES, splits=splits, info={"root": str(folder)})


SHAPES = DatasetSpec(
    name="shapes",
    load=load,
    version=VERSION,
    description="synthetic multi-label shapes, generated on first use (no download)",
    canonical=dict(SPLIT_SIZES),
    canonical_fingerprint="53bc472d3e1dc63c568b5aea1d1647e2",
    takes_data_root=False,
)
