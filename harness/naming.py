"""Names and hashes: run ids, names that may become file names, and content hashes.

Every string that becomes part of a path (a run id, a dataset or protocol name in a
leaderboard folder) passes through ``plain_name`` first: files that cross a trust boundary
(run folders, submissions) are written by strangers, and their strings are never joined
into paths unchecked.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable

from harness.errors import UserError

_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=@,-]{0,199}")


def plain_name(value: Any, what: str) -> str:
    """``value`` if it is a plain file name (letters, digits and ``._+=@,-``, not starting with
    a dot, at most 200 characters), else a one-line ``UserError`` naming ``what``."""
    if not isinstance(value, str) or not _PLAIN.fullmatch(value):
        raise UserError(
            f"{what} {value!r} is not a plain name: use letters, digits and . _ + = @ , - "
            "(no / or \\, not starting with a dot, at most 200 characters)"
        )
    return value


def safe_name(name: Any) -> str:
    """A component name as it appears in a run id (``:`` and ``/`` become ``_``)."""
    return str(name).replace(":", "_").replace("/", "_")


def default_run_id(dataset: str, model: str, augmentation: str, size: int, protocol: str, seed: int,
                   loss: str | None = None, recipe: str | None = None) -> str:
    """``{dataset}-{model}-{aug}-{size}-{protocol}-seed{seed}``, plus ``-{loss}`` for a
    non-default loss and ``-{recipe}`` for a non-default recipe: the same cell, the same folder."""
    parts = [dataset, model, augmentation, str(size), protocol, f"seed{seed}"] + [p for p in (loss, recipe) if p]
    return "-".join(safe_name(part) for part in parts)


def fusion_run_id(dataset: str, models: Iterable[str], augmentations: Iterable[str], sizes: Iterable[int],
                  protocol: str, seeds: Iterable[int], label: str) -> str:
    """``{dataset}-{models}-{augs}-{sizes}-{protocol}-seed{seeds}-{label}``, multi-valued parts
    sorted and joined with ``+``, so the id does not depend on the order members are given in."""

    def join(values: Iterable) -> str:
        return "+".join(safe_name(v) for v in sorted(set(values), key=lambda v: (isinstance(v, str), v)))

    return (
        f"{safe_name(dataset)}-{join(models)}-{join(augmentations)}-{join(sizes)}-"
        f"{safe_name(protocol)}-seed{join(seeds)}-{safe_name(label)}"
    )


def sha256_of(path: Path | str) -> str:
    """The sha256 of one file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_of_files(paths: Iterable[Path], root: Path) -> str:
    """One sha256 over several files: each file's path relative to ``root`` and its bytes,
    in sorted order, so the hash names both the layout and the contents."""
    digest = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


# Besides its ``.py`` files, what of a package folder a plugin's code (hash and bundle) holds.
LICENSE_FILES = ("LICENSE", "NOTICE", "COPYING")
_PACKAGE_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+=@,-]{0,199}")


def package_part(value: str, what: str) -> str:
    """``value`` if it may be one segment of a path inside a package folder: a plain name that
    may also start with ``_`` (``__init__.py``, ``_private.py``); never ``..``, a separator or
    a leading dot. Else a one-line ``UserError`` naming ``what``."""
    if not _PACKAGE_PART.fullmatch(value):
        raise UserError(f"{what} {value!r} is not a plain file or folder name: use letters, digits and _ . + = @ , - "
                        "(no / or \\, not starting with a dot); rename it")
    return value


def package_files(folder: Path | str) -> list[Path]:
    """The files that make a package folder's code, sorted: every ``.py`` file and every
    ``LICENSE*``, ``NOTICE*`` and ``COPYING*`` file, at any depth, skipping ``__pycache__`` and
    dot-folders. A link anywhere in the folder, or an odd name on the way to a file it
    holds, is refused in one line: the folder is copied and hashed as written by a stranger."""
    folder = Path(folder)
    found, pending = [], [folder]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                path = Path(entry.path)
                if entry.is_symlink():
                    raise UserError(f"{path}: a symbolic link in a plugin package, which holds regular files and "
                                    "folders only: replace the link with what it points to")
                if entry.is_dir(follow_symlinks=False):
                    if entry.name != "__pycache__" and not entry.name.startswith("."):
                        pending.append(path)
                elif entry.is_file(follow_symlinks=False) and (
                        entry.name.endswith(".py") or entry.name.startswith(LICENSE_FILES)):
                    for part in path.relative_to(folder).parts:
                        package_part(part, f"plugin package {folder}: file")
                    found.append(path)
    return sorted(found)


def code_sha256(path: Path | str, kind: str | None = None) -> str | None:
    """The sha256 of a plugin's code: a ``.py`` file's bytes, or the ``package_files`` of a
    package folder (``sha256_of_files``); ``None`` when there is no such file or folder, or
    when ``kind`` (``"file"`` or ``"directory"``, as run.json and bundles record a plugin) is
    given and ``path`` is not of that kind. The one home of this rule: the registry, run
    files, resumed runs and stored submissions all hash plugin code here."""
    path = Path(path)
    if kind is not None and path.is_file() != (kind == "file"):
        return None
    if path.is_file():
        return sha256_of(path)
    if path.is_dir():
        return sha256_of_files(package_files(path), path)
    return None


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: the same data gives the same text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_json(value: Any) -> str:
    """sha256 of ``canonical_json(value)``."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()
