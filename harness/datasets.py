"""What dataset plugins build with: image files kept inside their folder, found cheaply, and
the splits assembled into a ``Dataset`` with every unusable entry a ``DatasetProblem``.

Ids, ``file_name`` strings and list entries come from files anyone may have written, so a
loader joins them to its image folder only when they name a file inside it:
:func:`leaves_folder` refuses absolute paths, drive letters, ``..`` components (``/`` and
``\\`` both count as separators) and NUL characters, before anything is opened. The check
is on the name as written; symbolic links inside the data root are the owner's own layout
(image folders linked to another disk, git-annex or DVC checkouts) and are followed.

:class:`Files` holds the names and their folder and makes a ``Path`` only when one is asked
for, so that a split of 100,000 images costs no 100,000 path objects at load time, and
:func:`existing` finds which files exist with one directory listing per folder instead of
one ``stat`` per file. :func:`assemble` is where every built-in dataset, and the manifest,
hand their listed ids, files and labels over.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Iterable, Iterator, TypedDict

import numpy as np

from harness.specs import Dataset, Split

_SEPARATOR = re.compile(r"[\\/]")


class DatasetProblem(TypedDict, total=False):
    """One entry of a dataset that cannot be used as listed (``Dataset.problems``), as a loader,
    ``bench data verify`` and ``bench check`` report it: ``problem`` says what is wrong."""

    split: str
    id: str
    file: str
    problem: str


def leaves_folder(name: str) -> bool:
    """Whether ``name``, joined to a folder, could name something outside it (or is no usable name)."""
    if "\0" in name or name[:1] in ("/", "\\") or (name[1:2] == ":" and name[:1].isalpha()):
        return True
    return ".." in name and ".." in _SEPARATOR.split(name)


def quoted(name: str, limit: int = 80) -> str:
    """``name`` quoted for a one-line message, cut to ``limit`` characters."""
    return repr(name if len(name) <= limit else name[: limit - 1] + "…")


class Files(Sequence):
    """The image files ``folder / name`` for each name, as a read-only sequence of ``Path``."""

    __slots__ = ("folder", "names")

    def __init__(self, folder: Path, names: Sequence[str]):
        self.folder = Path(folder)
        self.names = names

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Files(self.folder, self.names[index])
        return self.folder / self.names[index]

    def __iter__(self) -> Iterator[Path]:
        return (self.folder / name for name in self.names)

    def __repr__(self) -> str:
        return f"Files({str(self.folder)!r}, {len(self.names)} names)"

    def take(self, indices: Sequence[int]) -> Files:
        """The files at ``indices``, in that order."""
        return Files(self.folder, [self.names[i] for i in indices])


def take(paths: Sequence, indices: Sequence[int]) -> Sequence:
    """``paths[i]`` for each of ``indices``, still lazy for :class:`Files`."""
    return paths.take(indices) if isinstance(paths, Files) else [paths[i] for i in indices]


def existing(paths: Sequence) -> np.ndarray:
    """Whether each path is a file (links followed), as ``os.path.isfile`` says.

    Each folder is listed once; only a name missing from its folder's listing is checked with
    ``isfile`` too (a case-insensitive file system finds ``A.JPG`` as ``a.jpg``), and a folder
    that does not exist answers for all its files.
    """
    if isinstance(paths, Files):
        base, names = os.fspath(paths.folder), paths.names
    else:
        base, names = "", [os.fspath(path) for path in paths]
    listings: dict[str, dict | None] = {}
    found = np.zeros(len(names), dtype=bool)
    for i, relative in enumerate(names):
        cut = max(relative.rfind("/"), relative.rfind(os.sep))  # os.path.split, without its costly tidying
        parent, name = relative[: cut if cut > 0 else cut + 1], relative[cut + 1:]
        if parent not in listings:
            listings[parent] = _listing(os.path.join(base, parent))
        entries = listings[parent]
        if entries is None:
            continue
        entry = entries.get(name)
        if entry is None:
            found[i] = os.path.isfile(os.path.join(base, relative))
        else:
            try:
                found[i] = entry.is_file()
            except OSError:
                found[i] = False
    return found


def _listing(folder: str) -> dict | None:
    """``name → DirEntry`` of ``folder``: ``None`` when it does not exist, empty when it cannot
    be listed (each of its files is then checked on its own)."""
    try:
        with os.scandir(folder or ".") as entries:
            return {entry.name: entry for entry in entries}
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None
    except OSError:
        return {}


def assemble(
    name: str,
    classes: Sequence[str],
    listed: dict[str, tuple[list[str], Sequence[Path], np.ndarray]],
    options: dict,
    *,
    info: dict[str, Any] | None = None,
    problems: Iterable[DatasetProblem] = (),
    refused: Iterable[DatasetProblem] = (),
) -> Dataset:
    """Build a ``Dataset`` from the listed (ids, image files, N×C labels) of each split.

    Only checks that each file exists (a directory listing, no decoding) so loading stays
    cheap. A missing file is a problem and stays in its split, or with
    ``options["skip_missing"]`` is left out. ``refused`` holds the problems of entries the
    loader left out because their file name leads outside the data (see
    ``leaves_folder``): they are problems even with ``skip_missing``, and count as
    listed but not found. ``coverage`` is found / listed over all splits;
    ``info["listed"]`` keeps the listed counts so that ``bench data verify`` can compare
    them with the canonical ones.
    """
    skip_missing = bool(options.get("skip_missing"))
    refused = list(refused)
    problems = refused + list(problems)
    splits: dict[str, Split] = {}
    listed_counts: dict[str, int] = {}
    missing_counts: dict[str, int] = {}
    for split_name, (ids, paths, labels) in listed.items():
        found = existing(paths)
        left_out = sum(p["split"] == split_name for p in refused)
        listed_counts[split_name] = len(ids) + left_out
        missing_counts[split_name] = int((~found).sum()) + left_out
        if skip_missing:
            keep = np.flatnonzero(found)
            ids = [ids[i] for i in keep]
            paths = take(paths, keep)
            labels = labels[keep]
        else:
            problems.extend(
                {"split": split_name, "id": ids[i], "file": str(paths[i]), "problem": "image file not found"}
                for i in np.flatnonzero(~found)
            )
        splits[split_name] = Split(ids=ids, image_paths=paths, labels=np.asarray(labels, dtype=np.int8))
    total = sum(listed_counts.values())
    coverage = 1.0 if total == 0 else (total - sum(missing_counts.values())) / total
    record = dict(info or {})
    record["listed"] = listed_counts
    if any(missing_counts.values()):
        record["missing"] = missing_counts
    return Dataset(
        name=name,
        classes=list(classes),
        splits=splits,
        coverage=coverage,
        problems=problems,
        info=record,
    )
