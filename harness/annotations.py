"""Parsed annotation files, kept so that a large one is parsed once per content, not once per command.

A loader calls ``parsed(name, version, root, files, parse)``: ``parse()`` reads ``files`` and
returns numpy arrays (numbers, or strings packed by :func:`pack_strings`), and its result is
stored in ``cache_root()/annotations/<name>-<slot>.npz``, one entry per loader, version and
resolved data root (the slot), written atomically with ``np.savez`` and read back with
``allow_pickle=False``. An entry is used only while its key, the sha256 of the loader's
version, the root and every file's content, is that of the files now on disk, and while its
arrays have the sha256 its header records (``arrays_sha256``): a planted or corrupt entry is
parsed again, with a warning line naming it.

Hashing hundreds of megabytes would cost most of what the cache saves, so each entry also
records every file's size, modification and change times and inode: while those are the
same the recorded content hash is trusted, unless the file had not settled when it was
hashed (``cache.settled``: such a file is hashed again on each load until it has). Whoever finds no usable entry takes a file lock on the slot; the processes of a
``torchrun`` job (or any other commands) that arrive meanwhile wait for it and then read
what it wrote, so one parses and the others do not.
"""

from __future__ import annotations

import hashlib
import json
import time
import zipfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from harness.cache import cache_root, file_signature, settled, writes_in
from harness.naming import sha256_of
from harness.progress import log
from harness.files import atomic_write

FORMAT = "2"  # of the entry files; part of every key
_HEADER = "header"
_READ_ERRORS = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, UnicodeDecodeError)


def folder() -> Path:
    """Where the entries live (beside the image caches, so ``bench cache`` sees them)."""
    return cache_root() / "annotations"


def pack_strings(strings: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Strings as (UTF-8 bytes, end offsets in characters): exact for any text, NULs included."""
    text = "".join(strings)
    ends = np.cumsum([len(s) for s in strings], dtype=np.int64)
    return np.frombuffer(text.encode("utf-8", "surrogatepass"), dtype=np.uint8), ends


def unpack_strings(data: np.ndarray, ends: np.ndarray) -> list[str]:
    """The strings :func:`pack_strings` packed."""
    text = data.tobytes().decode("utf-8", "surrogatepass")
    bounds = [0, *ends.tolist()]
    return [text[start:end] for start, end in zip(bounds, bounds[1:])]


def arrays_sha256(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over every array's name, dtype, shape and bytes, in name order: the entry's checksum."""
    digest = hashlib.sha256()
    for key in sorted(arrays):
        array = np.ascontiguousarray(arrays[key])
        digest.update(f"{key}\0{array.dtype.str}\0{array.shape}\0".encode() + array.tobytes())
    return digest.hexdigest()


def _read(entry: Path, warn: bool) -> tuple[dict | None, dict[str, np.ndarray] | None]:
    """The entry's (header, arrays); (None, None) when there is none, it is of another format,
    it cannot be read or its arrays do not have the sha256 its header records (planted or
    corrupt: it is rebuilt, with a warning line when ``warn``)."""
    if not entry.is_file():
        return None, None
    try:
        with np.load(entry, allow_pickle=False) as archive:
            header = json.loads(archive[_HEADER].tobytes())
            arrays = {key: archive[key] for key in archive.files if key != _HEADER}
    except _READ_ERRORS:
        if warn:
            log.warning(f"Warning: annotation cache {entry} cannot be read (corrupt?); parsing the annotations again")
        return None, None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        return None, None
    if header.get("arrays_sha256") != arrays_sha256(arrays):
        if warn:
            log.warning(f"Warning: annotation cache {entry} does not have the sha256 it records (planted or corrupt); "
                        "parsing the annotations again")
        return None, None
    return header, arrays


def _trusted(header: dict | None, signatures: list[list[int]]) -> bool:
    """Whether ``header`` describes these very files without hashing them again."""
    if header is None:
        return False
    files = header.get("files")
    return (
        isinstance(files, list)
        and [f.get("signature") for f in files] == signatures
        and all(f.get("settled") is True for f in files)
    )


def _write(entry: Path, header: dict, arrays: dict[str, np.ndarray]) -> None:
    encoded = np.frombuffer(json.dumps({**header, "arrays_sha256": arrays_sha256(arrays)}).encode(), dtype=np.uint8)
    atomic_write(entry, lambda stream: np.savez(stream, **{_HEADER: encoded}, **arrays))


def parsed(
    name: str,
    version: str,
    root: Path,
    files: Sequence[Path],
    parse: Callable[[], dict[str, np.ndarray]],
) -> dict[str, np.ndarray]:
    """``parse()``'s arrays for the current content of ``files``, from the cache when it has them.

    ``version`` is the loader's: change it whenever ``parse`` would return anything else for
    the same files. When a file is missing, ``parse()`` runs (and says so in its own words).
    """
    files = [Path(f).resolve() for f in files]
    if not all(f.is_file() for f in files):
        return parse()
    resolved_root = str(Path(root).resolve())
    slot = hashlib.sha256(json.dumps([FORMAT, name, version, resolved_root]).encode()).hexdigest()[:16]
    entry = folder() / f"{name}-{slot}.npz"
    signatures = [file_signature(f) for f in files]
    header, arrays = _read(entry, warn=False)
    if _trusted(header, signatures):
        return arrays
    from filelock import FileLock

    lock = FileLock(str(entry) + ".lock")
    with writes_in(entry.parent):
        entry.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    try:
        header, arrays = _read(entry, warn=True)
        if _trusted(header, signatures):
            return arrays
        now_ns = time.time_ns()
        hashes = [sha256_of(f) for f in files]
        identity = [FORMAT, name, version, resolved_root, [str(f) for f in files], hashes]
        key = hashlib.sha256(json.dumps(identity).encode()).hexdigest()
        arrays = arrays if header is not None and header.get("key") == key else None
        if arrays is None:
            started = time.perf_counter()
            arrays = parse()
            log.info(f"{name}: parsed {len(files)} annotation file(s) in {time.perf_counter() - started:.1f} s; "
                     f"later loads read {entry}")
        if [file_signature(f) for f in files] == signatures:  # unchanged while it was read
            record = {"format": FORMAT, "name": name, "version": version, "root": resolved_root, "key": key,
                      "files": [{"path": str(f), "signature": s, "sha256": h, "settled": settled(s, now_ns)}
                                for f, s, h in zip(files, signatures, hashes)]}
            with writes_in(entry.parent):
                _write(entry, record, arrays)
        return arrays
    finally:
        lock.release()
