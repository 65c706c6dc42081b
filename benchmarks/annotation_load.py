"""How long the annotation phase of a full-size COCO 2014 (and NUS-WIDE) takes, first and again.

    python benchmarks/annotation_load.py [--workdir DIR] [--datasets coco2014,nuswide] [--json PATH]

Writes synthetic copies of the official annotation files at their real sizes into
``--workdir`` (kept there and reused by later runs; a temporary folder otherwise):

- ``coco2014``: ``annotations/instances_{train,val}2014.json`` written like the real ones
  (compact JSON; images with COCO's file names, sizes, URLs and dates; 604,907 / 291,875
  instances with segmentation polygons, bboxes and areas, ~1% crowd regions as RLE counts;
  the 80 real categories with their ids 1..90 and gaps) for 82,783 / 40,504 images, of
  which 702 / 367 have no instance: about 330 MB and 160 MB;
- ``nuswide``: ``Concepts81.txt``, the three image lists (161,789 + 107,859 entries in ~700
  Flickr folders, backslash-separated) and the 162 per-concept label files.

No image is written: every command runs with ``skip_missing``. Each measurement is a fresh
Python process (so that its peak memory is its own) with ``BENCH_CACHE_DIR`` pointing at a
new, empty cache for the first run and the same cache for the second:

- ``load_dataset``: what ``bench run`` does before training, ``harness.runner.load_dataset``
  (the loader, its checks), timed after the imports; peak RSS from ``getrusage``;
- ``bench data verify --skip-missing --json``: the whole command, interpreter start included.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tabulate import tabulate

COCO_CATEGORIES = [
    (1, "person", "person"), (2, "bicycle", "vehicle"), (3, "car", "vehicle"), (4, "motorcycle", "vehicle"),
    (5, "airplane", "vehicle"), (6, "bus", "vehicle"), (7, "train", "vehicle"), (8, "truck", "vehicle"),
    (9, "boat", "vehicle"), (10, "traffic light", "outdoor"), (11, "fire hydrant", "outdoor"),
    (13, "stop sign", "outdoor"), (14, "parking meter", "outdoor"), (15, "bench", "outdoor"), (16, "bird", "animal"),
    (17, "cat", "animal"), (18, "dog", "animal"), (19, "horse", "animal"), (20, "sheep", "animal"),
    (21, "cow", "animal"), (22, "elephant", "animal"), (23, "bear", "animal"), (24, "zebra", "animal"),
    (25, "giraffe", "animal"), (27, "backpack", "accessory"), (28, "umbrella", "accessory"),
    (31, "handbag", "accessory"), (32, "tie", "accessory"), (33, "suitcase", "accessory"), (34, "frisbee", "sports"),
    (35, "skis", "sports"), (36, "snowboard", "sports"), (37, "sports ball", "sports"), (38, "kite", "sports"),
    (39, "baseball bat", "sports"), (40, "baseball glove", "sports"), (41, "skateboard", "sports"),
    (42, "surfboard", "sports"), (43, "tennis racket", "sports"), (44, "bottle", "kitchen"),
    (46, "wine glass", "kitchen"), (47, "cup", "kitchen"), (48, "fork", "kitchen"), (49, "knife", "kitchen"),
    (50, "spoon", "kitchen"), (51, "bowl", "kitchen"), (52, "banana", "food"), (53, "apple", "food"),
    (54, "sandwich", "food"), (55, "orange", "food"), (56, "broccoli", "food"), (57, "carrot", "food"),
    (58, "hot dog", "food"), (59, "pizza", "food"), (60, "donut", "food"), (61, "cake", "food"),
    (62, "chair", "furniture"), (63, "couch", "furniture"), (64, "potted plant", "furniture"),
    (65, "bed", "furniture"), (67, "dining table", "furniture"), (70, "toilet", "furniture"),
    (72, "tv", "electronic"), (73, "laptop", "electronic"), (74, "mouse", "electronic"),
    (75, "remote", "electronic"), (76, "keyboard", "electronic"), (77, "cell phone", "electronic"),
    (78, "microwave", "appliance"), (79, "oven", "appliance"), (80, "toaster", "appliance"), (81, "sink", "appliance"),
    (82, "refrigerator", "appliance"), (84, "book", "indoor"), (85, "clock", "indoor"), (86, "vase", "indoor"),
    (87, "scissors", "indoor"), (88, "teddy bear", "indoor"), (89, "hair drier", "indoor"),
    (90, "toothbrush", "indoor"),
]
# folder: (images, of which without instances, instances)
COCO_SIZES = {"train2014": (82783, 702, 604907), "val2014": (40504, 367, 291875)}
NUSWIDE_SIZES = {"Train": 161789, "Test": 107859}
NUSWIDE_FOLDERS = 700
NUSWIDE_CONCEPTS = 81


def _numbers(values: np.ndarray) -> str:
    return ",".join(f"{v:.2f}" for v in values.tolist())


def write_instances(path: Path, folder: str, sizes: tuple[int, int, int], scale: float, seed: int) -> dict:
    """One instances file like COCO's; returns its counts."""
    rng = np.random.default_rng(seed)
    images, empty, instances = (max(int(round(n * scale)), 1) for n in sizes)
    empty = min(empty, images - 1)
    ids = np.sort(rng.choice(np.arange(1, 581930), size=images, replace=False))
    kept = np.sort(rng.choice(images, size=images - empty, replace=False))
    per_image = 1 + rng.multinomial(max(instances - len(kept), 0), rng.dirichlet(np.ones(len(kept))))
    frequency = 1.0 / np.arange(1, len(COCO_CATEGORIES) + 1) ** 0.9
    frequency /= frequency.sum()
    widths = rng.choice([640, 500, 480, 427, 612], size=images)
    heights = rng.choice([480, 375, 640, 427, 612], size=images)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        out.write('{"info":{"description":"This is stable 1.0 version of the 2014 MS COCO dataset.",'
                  '"url":"http://mscoco.org","version":"1.0","year":2014,"contributor":"Microsoft COCO group",'
                  '"date_created":"2015-01-27 09:11:52.357475"},"images":[')
        for i, image_id in enumerate(ids.tolist()):
            name = f"COCO_{folder}_{image_id:012d}.jpg"
            out.write(("," if i else "") + json.dumps({
                "license": int(rng.integers(1, 9)), "file_name": name,
                "coco_url": f"http://mscoco.org/images/{image_id}", "height": int(heights[i]), "width": int(widths[i]),
                "date_captured": "2013-11-14 16:28:13",
                "flickr_url": f"http://farm{image_id % 9 + 1}.staticflickr.com/3153/{image_id}_164f0c0b83_z.jpg",
                "id": image_id}, separators=(",", ":")))
        out.write('],"licenses":[' + ",".join(
            f'{{"url":"http://creativecommons.org/licenses/by/2.0/","id":{k},"name":"Attribution License"}}'
            for k in range(1, 9)) + '],"annotations":[')
        annotation_id = 1
        first = True
        for row, count in zip(kept.tolist(), per_image.tolist()):
            image_id, width, height = int(ids[row]), int(widths[row]), int(heights[row])
            chunk = []
            for category in rng.choice(len(COCO_CATEGORIES), size=count, p=frequency).tolist():
                x, y = rng.uniform(0, width * 0.8), rng.uniform(0, height * 0.8)
                w, h = rng.uniform(5, width - x), rng.uniform(5, height - y)
                if rng.random() < 0.009:
                    counts = rng.integers(1, 400, size=int(rng.integers(60, 400)))
                    segmentation = f'{{"counts":[{",".join(map(str, counts.tolist()))}],"size":[{height},{width}]}}'
                    crowd = 1
                else:
                    points = int(rng.integers(8, 48))
                    polygon = np.column_stack([rng.uniform(x, x + w, points), rng.uniform(y, y + h, points)]).ravel()
                    segmentation = f"[[{_numbers(polygon)}]]"
                    crowd = 0
                chunk.append(f'{{"segmentation":{segmentation},"area":{w * h * 0.6:.4f},"iscrowd":{crowd},'
                             f'"image_id":{image_id},"bbox":[{_numbers(np.array([x, y, w, h]))}],'
                             f'"category_id":{COCO_CATEGORIES[category][0]},"id":{annotation_id}}}')
                annotation_id += 1
            out.write(("" if first else ",") + ",".join(chunk))
            first = False
        out.write('],"categories":[' + ",".join(
            json.dumps({"supercategory": s, "id": i, "name": n}, separators=(",", ":")) for i, n, s in COCO_CATEGORIES)
            + "]}")
    return {"images": images, "without_instances": empty, "instances": annotation_id - 1,
            "megabytes": round(path.stat().st_size / 1e6, 1)}


def write_coco(root: Path, scale: float) -> dict:
    return {folder: write_instances(root / "annotations" / f"instances_{folder}.json", folder, sizes, scale, seed)
            for seed, (folder, sizes) in enumerate(COCO_SIZES.items())}


def write_nuswide(root: Path, scale: float) -> dict:
    """The release layout's text files at NUS-WIDE's sizes (no images)."""
    rng = np.random.default_rng(7)
    concepts = [f"concept{j:02d}" for j in range(NUSWIDE_CONCEPTS)]
    root.mkdir(parents=True, exist_ok=True)
    (root / "Concepts81.txt").write_text("".join(f"{c}\n" for c in concepts))
    (root / "ImageList").mkdir(exist_ok=True)
    labels_dir = root / "Groundtruth" / "TrainTestLabels"
    labels_dir.mkdir(parents=True, exist_ok=True)
    folders = [f"folder{k:03d}" for k in range(NUSWIDE_FOLDERS)]
    everything = []
    counts = {}
    for suffix, size in NUSWIDE_SIZES.items():
        n = max(int(round(size * scale)), 1)
        lines = [f"{folders[int(f)]}\\{k:04d}_{int(p)}.jpg"
                 for k, (f, p) in enumerate(zip(rng.integers(0, len(folders), n), rng.integers(10**8, 10**10, n)))]
        (root / "ImageList" / f"{suffix}Imagelist.txt").write_text("\r\n".join(lines) + "\r\n")
        everything += [f"C:\\ImageData\\Flickr\\{line}" for line in lines]
        present = rng.random((n, NUSWIDE_CONCEPTS)) < 0.03
        for j, concept in enumerate(concepts):
            (labels_dir / f"Labels_{concept}_{suffix}.txt").write_bytes(
                b"".join(b"1\n" if v else b"0\n" for v in present[:, j].tolist()))
        counts[suffix] = n
    (root / "ImageList" / "Imagelist.txt").write_text("\r\n".join(everything) + "\r\n")
    return counts


WRITERS = {"coco2014": write_coco, "nuswide": write_nuswide}

LOAD = """
import json, resource, sys, time
started = time.perf_counter()
from harness.registry import Registry
from harness.runner import load_dataset
imported = time.perf_counter()
dataset = load_dataset(Registry().get("dataset", sys.argv[1]), sys.argv[2], skip_missing=True)
loaded = time.perf_counter()
print(json.dumps({"import_s": imported - started, "load_s": loaded - imported,
                  "listed": dataset.info["listed"],
                  "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _environment(cache: Path) -> dict:
    return {**os.environ, "BENCH_CACHE_DIR": str(cache), "OMP_WAIT_POLICY": "PASSIVE"}


def measure(dataset: str, root: Path, cache: Path) -> dict:
    """``load_dataset`` in a fresh process: seconds after the imports, and peak RSS."""
    result = subprocess.run([sys.executable, "-c", LOAD, dataset, str(root)], capture_output=True, text=True,
                            env=_environment(cache), check=True)
    return json.loads(result.stdout.splitlines()[-1])


def verify_command(dataset: str, root: Path, cache: Path) -> float:
    """Wall seconds of ``bench data verify --skip-missing --json`` as a new process."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "harness", "data", "verify", "--dataset", dataset,
                             "--data-root", str(root), "--skip-missing", "--json"],
                            capture_output=True, text=True, env=_environment(cache))
    seconds = time.perf_counter() - started
    if result.returncode not in (0, 1):  # 1: the counts differ from the official ones (no images)
        raise SystemExit(f"bench data verify failed: {result.stderr.strip()}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="folder for the layouts (reused when present) and caches")
    parser.add_argument("--datasets", default="coco2014,nuswide")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the real sizes (for smoke tests)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    arguments = parser.parse_args()
    temporary = None if arguments.workdir else tempfile.TemporaryDirectory(prefix="annotation-load-")
    workdir = arguments.workdir or Path(temporary.name)
    record = {"benchmark": "annotation_load", "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
              "machine": {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                          "python": platform.python_version()},
              "scale": arguments.scale, "datasets": {}}
    rows = []
    for dataset in arguments.datasets.split(","):
        root = workdir / f"{dataset}-x{arguments.scale:g}"
        marker = root / "layout.json"
        if not marker.is_file():
            started = time.perf_counter()
            counts = WRITERS[dataset](root, arguments.scale)
            marker.write_text(json.dumps({"counts": counts, "write_s": time.perf_counter() - started}))
        layout = json.loads(marker.read_text())
        stamp = time.strftime("%Y%m%d-%H%M%S")
        load_cache, verify_cache = workdir / f"cache-{dataset}-{stamp}-load", workdir / f"cache-{dataset}-{stamp}-verify"
        first, second = measure(dataset, root, load_cache), measure(dataset, root, load_cache)
        verify_first, verify_second = verify_command(dataset, root, verify_cache), verify_command(dataset, root, verify_cache)
        record["datasets"][dataset] = {"layout": layout["counts"], "first": first, "second": second,
                                       "verify_command_s": {"first": verify_first, "second": verify_second}}
        rows += [(dataset, "first", first["load_s"], first["max_rss_mb"], verify_first),
                 (dataset, "second", second["load_s"], second["max_rss_mb"], verify_second)]
    print(tabulate(rows, headers=["dataset", "load", "load_dataset s", "peak RSS MB", "bench data verify s"],
                   floatfmt=".2f"))
    if arguments.json:
        arguments.json.write_text(json.dumps(record, indent=2))
    if temporary:
        temporary.cleanup()


if __name__ == "__main__":
    main()
