"""``verify``: decode every image of a loaded dataset and check it against the official facts.

Loading a dataset only stats its files, so that ``bench run`` starts fast; this is the slow,
thorough check a user runs once per copy of the data (``bench data verify``). It finds files
that do not decode (truncated JPEGs included: truncated images are never accepted), ids or
identical files shared between splits, label matrices out of shape, and split sizes or
per-class counts that differ from the official ones.

A loader may record in ``dataset.info``: ``listed`` (split → images listed before missing
ones were left out) and ``canonical_counts`` (split → {"positives": {class: n},
"ignored": {class: n}} of the complete official data), both compared when present, and
``warnings`` (dicts like problems: split, id, file, problem), things a user should see that
do not make the data unfit, such as a manifest's images outside its folder. Warnings are
listed beside the problems; ``bench run`` and the exit status of ``bench data verify`` look
at problems only.

Images are decoded on every core by a pool of threads that each take a chunk of files at a
time: Pillow releases the GIL while it decodes, and on this project's machines threads were
as fast as worker processes or faster (``benchmarks/verify_speed.py``). The report is the
same whatever the number of threads.
"""

from __future__ import annotations

import functools
import hashlib
import io
import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from harness import contracts
from harness.data import fingerprint
from harness.machine import usable_cores
from harness.image_files import MAX_IMAGE_BYTES, UnsafeImageFile, check_pixels, open_image_file
from harness.specs import Dataset, DatasetSpec

CHUNK = 32  # images a thread checks per task


def check_image(path: Path | str, max_bytes: int = MAX_IMAGE_BYTES) -> tuple[bytes | None, str | None]:
    """(content digest, problem) of one image file: it must be a regular file of at most
    ``max_bytes`` bytes and ``MAX_IMAGE_PIXELS`` pixels, readable, and decode fully."""
    try:
        with open_image_file(path, max_bytes) as stream:
            data = stream.read(max_bytes + 1)
    except FileNotFoundError:
        return None, "image file not found"
    except UnsafeImageFile as error:
        return None, str(error)
    except OSError as error:
        return None, f"cannot read: {error.strerror or error}"
    digest = hashlib.sha256(data).digest()[:16]
    try:
        with Image.open(io.BytesIO(data)) as image:
            check_pixels(image)
            image.load()
            if image.mode != "RGB":
                image.convert("RGB")
    except UnsafeImageFile as error:
        return digest, str(error)
    except UnidentifiedImageError:
        return digest, "cannot decode: not an image format Pillow reads"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        return digest, f"cannot decode: {error}"
    except Exception as error:  # a malformed file may trip any of Pillow's parsers
        return digest, f"cannot decode: {type(error).__name__}: {error}"
    return digest, None


def check_images(paths: Sequence[str], max_bytes: int = MAX_IMAGE_BYTES) -> list[tuple[bytes | None, str | None]]:
    """:func:`check_image` of each path, in order."""
    return [check_image(path, max_bytes) for path in paths]


def _problem(split: str | None, image_id: Any, file: Any, problem: str) -> dict:
    return {"split": split, "id": image_id, "file": None if file is None else str(file), "problem": problem}


def _decode_all(dataset: Dataset, progress: bool, workers: int,
                max_bytes: int = MAX_IMAGE_BYTES) -> tuple[dict[str, list], list[dict]]:
    """Digest per image (per split, in order) and the decoding problems, on ``workers`` threads."""
    jobs = [(name, i) for name, split in dataset.splits.items() for i in range(len(split))]
    paths = [os.fspath(path) for split in dataset.splits.values() for path in split.image_paths]
    digests: dict[str, list] = {name: [None] * len(split) for name, split in dataset.splits.items()}
    problems = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        chunks = (paths[start:start + CHUNK] for start in range(0, len(paths), CHUNK))
        results = itertools.chain.from_iterable(pool.map(functools.partial(check_images, max_bytes=max_bytes), chunks))
        bar = tqdm(results, total=len(jobs), desc=f"decoding {dataset.name}", unit="img",
                   disable=None if progress else True)
        for (name, i), path, (digest, problem) in zip(jobs, paths, bar):
            digests[name][i] = digest
            if problem:
                problems.append(_problem(name, dataset.splits[name].ids[i], path, problem))
    return digests, problems


def _overlap_problems(dataset: Dataset, digests: dict[str, list]) -> list[dict]:
    """Ids repeated within a split, and ids or file contents shared with an earlier split."""
    problems = []
    seen_ids: dict[Any, str] = {}
    seen_content: dict[bytes, tuple[str, Any]] = {}
    for name, split in dataset.splits.items():
        here: set = set()
        for image_id, path, digest in zip(split.ids, split.image_paths, digests[name]):
            if image_id in here:
                problems.append(_problem(name, image_id, path, f"id appears twice in {name}"))
            elif image_id in seen_ids:
                problems.append(_problem(name, image_id, path, f"id also in {seen_ids[image_id]}"))
            here.add(image_id)
            if digest is not None and digest in seen_content:
                other_split, other_id = seen_content[digest]
                problems.append(_problem(name, image_id, path, f"same file content as {other_split} image {other_id}"))
        for image_id in here:
            seen_ids.setdefault(image_id, name)
        for image_id, digest in zip(split.ids, digests[name]):
            if digest is not None:
                seen_content.setdefault(digest, (name, image_id))
    return problems


def _label_problems(dataset: Dataset) -> list[dict]:
    """Label matrices whose shape does not match the classes, or with values outside 1/0/-1."""
    problems = []
    for name, split in dataset.splits.items():
        labels = np.asarray(split.labels)
        if labels.ndim != 2 or labels.shape[1] != len(dataset.classes):
            problems.append(_problem(name, None, None, f"label matrix has shape {labels.shape}, expected (N, {len(dataset.classes)})"))
            continue
        for row in np.flatnonzero(~np.isin(labels, contracts.LABEL_VALUES).all(axis=1)):
            problems.append(_problem(name, split.ids[row], split.image_paths[row], "labels other than 1, 0 and -1"))
    return problems


def _canonical_problems(dataset: Dataset, spec: DatasetSpec, summary: dict) -> list[dict]:
    """Split sizes compared with the spec's official ones; when every split has its official
    size, per-class counts (from ``info["canonical_counts"]``) and the fingerprint too."""
    if not spec.canonical:
        return []
    problems = []
    listed = dataset.info.get("listed", {})
    complete = True
    for name, official in spec.canonical.items():
        if name not in dataset.splits:
            problems.append(_problem(name, None, None, f"split missing; the official data has {official:,} images"))
            complete = False
            continue
        n = listed.get(name, len(dataset.splits[name]))
        complete = complete and n == official and len(dataset.splits[name]) == n
        if n != official:
            problems.append(_problem(name, None, None, f"{n:,} images listed; the official split has {official:,}"))
    if not complete:
        return problems
    for name, counts in dataset.info.get("canonical_counts", {}).items():
        if name not in summary["splits"]:
            continue
        for kind in ("positives", "ignored"):
            for class_name, official in counts[kind].items():
                found = summary["splits"][name][f"per_class_{kind}"].get(class_name)
                if found != official:
                    problems.append(_problem(name, None, None, f"class {class_name}: {found} {kind}; the official split has {official}"))
    if spec.canonical_fingerprint and summary["fingerprint"] != spec.canonical_fingerprint:
        problems.append(_problem(None, None, None, f"fingerprint {summary['fingerprint']} differs from the official "
                                 f"{spec.canonical_fingerprint}: same split sizes, but other ids, labels or order"))
    return problems


def verify(dataset: Dataset, spec: DatasetSpec, *, progress: bool = True, workers: int | None = None,
           max_image_bytes: int = MAX_IMAGE_BYTES) -> dict:
    """Decode every image and check the dataset; returns the summary ``bench data verify`` prints.

    Keys: dataset, version, classes, splits (per split: n, positives, ignored and their
    per-class counts), fingerprint, canonical_fingerprint, coverage, canonical (the spec's
    official split sizes), problems (dicts with split, id, file, problem; the loader's
    problems first) and warnings (the loader's ``info["warnings"]``). A dataset is fit for a
    benchmark when problems is empty. ``workers`` threads decode (default: one per core).
    """
    summary: dict[str, Any] = {
        "dataset": dataset.name,
        "version": spec.version,
        "classes": list(dataset.classes),
        "splits": {},
        "fingerprint": fingerprint(dataset),
        "canonical_fingerprint": spec.canonical_fingerprint,
        "coverage": dataset.coverage,
        "canonical": spec.canonical,
    }
    for name, split in dataset.splits.items():
        labels = np.asarray(split.labels)
        shaped = labels.ndim == 2 and labels.shape[1] == len(dataset.classes)
        positives = (labels == 1).sum(axis=0) if shaped else np.zeros(len(dataset.classes), dtype=int)
        ignored = (labels == -1).sum(axis=0) if shaped else np.zeros(len(dataset.classes), dtype=int)
        summary["splits"][name] = {
            "n": len(split),
            "listed": dataset.info.get("listed", {}).get(name, len(split)),
            "positives": int(positives.sum()),
            "ignored": int(ignored.sum()),
            "per_class_positives": {c: int(v) for c, v in zip(dataset.classes, positives)},
            "per_class_ignored": {c: int(v) for c, v in zip(dataset.classes, ignored)},
        }
    digests, decode_problems = _decode_all(dataset, progress, workers or usable_cores(), max_image_bytes)
    problems = [dict(p) for p in dataset.problems]
    known = {(p.get("split"), p.get("id"), p.get("file"), p.get("problem")) for p in problems}
    problems += [p for p in decode_problems if (p["split"], p["id"], p["file"], p["problem"]) not in known]
    problems += _overlap_problems(dataset, digests) + _label_problems(dataset) + _canonical_problems(dataset, spec, summary)
    summary["problems"] = problems
    summary["warnings"] = [dict(w) for w in dataset.info.get("warnings", ())]
    return summary
