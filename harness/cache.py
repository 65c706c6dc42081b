"""Where the harness keeps what it derives from data (never the source tree), and how it keeps disk use bounded.

Layout: ``cache_root()/<kind>/<entry>``, one folder (or file) per entry, built under the lock
``<entry>.lock`` beside it. ``KINDS`` names every kind the harness makes; ``bench cache list``
and ``bench cache clear`` treat all of them alike and never touch anything else under the root.

Every cache the harness writes goes through ``require_space`` (its size estimated before any
work, refused in one line when the disk cannot hold it and a margin) and ``write_file``
(ordinary buffered writes into a ``.partial`` file, renamed when complete: a full disk is an
error line, never a SIGBUS as under a growing memory map; a killed build leaves the
``.partial`` file, which the next build removes once it holds the lock).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from harness.errors import UserError
from harness.files import NO_SPACE, disk_space, human_bytes

KINDS = {
    "images": "images resized to S x S, uint8 (the resized cache)",
    "sizes": "original image sizes, for crops in the original pixels",
    "annotations": "parsed dataset annotations",
    "shapes": "the generated shapes dataset",
}
PARTIAL = ".partial"
LOCK = ".lock"
LAST_USED = "last-used"
META = "meta.json"
MARGIN_BYTES = 2 * 10**9  # kept free on every disk, or 5% of a smaller one
SETTLED_S = 2.0  # a file unchanged this long before it was hashed is trusted by its stat until it changes


def cache_root() -> Path:
    """``$BENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/multilabel-bench``, else ``~/.cache/multilabel-bench``."""
    if os.environ.get("BENCH_CACHE_DIR"):
        return Path(os.environ["BENCH_CACHE_DIR"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser()
    return base / "multilabel-bench"


@contextlib.contextmanager
def writes_in(folder: Path) -> Iterator[None]:
    """Turn a write refused by the file system (no permission, read-only) in the block, which
    writes to the cache ``folder``, into one line naming the path and saying what to do."""
    try:
        yield
    except OSError as error:
        if error.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        raise UserError(f"cannot write the cache at {error.filename or folder} ({error.strerror}); set "
                        "BENCH_CACHE_DIR to a folder you can write") from None


def file_signature(path: Path) -> list[int]:
    """A file's size, modification and change times, inode and device: while these are the ones
    recorded when it was hashed, a cache trusts the recorded hash instead of reading it again."""
    status = os.stat(path)
    return [status.st_size, status.st_mtime_ns, status.st_ctime_ns, status.st_ino, status.st_dev]


def settled(signature: list[int], hashed_ns: int) -> bool:
    """Whether the file last changed at least ``SETTLED_S`` before it was hashed at ``hashed_ns``:
    a write within the file system's timestamp granularity could otherwise leave the signature
    unchanged, so a file that had not settled is hashed again on each use."""
    return hashed_ns - max(signature[1], signature[2]) >= SETTLED_S * 1e9


def kind_folder(kind: str) -> Path:
    """``cache_root()/kind``, created; ``kind`` must be one of ``KINDS``."""
    if kind not in KINDS:
        raise ValueError(f"unknown cache kind {kind!r}; add it to harness.cache.KINDS")
    folder = cache_root() / kind
    with writes_in(folder):
        folder.mkdir(parents=True, exist_ok=True)
    return folder


class NoSpace(UserError):
    """A cache that the disk cannot hold: refused before it is built, or its disk filled while it was written."""


def require_space(entry: Path, need: int, what: str) -> None:
    """Refuse, in one line, to write ``need`` bytes of ``what`` into the cache entry ``entry`` unless they
    fit beside the margin kept free (2 GB, or 5% of a disk smaller than 40 GB); the ``.partial``
    files of a killed build of the entry count as free, since the build removes them."""
    folder = entry.parent
    free, total = disk_space(folder)
    free += sum(p.lstat().st_blocks * 512 for p in entry.glob("*" + PARTIAL)) if entry.is_dir() else 0
    margin = min(MARGIN_BYTES, total // 20)
    if need + margin > free:
        raise NoSpace(
            f"cannot cache {what} in {folder}: it needs {human_bytes(need)}, {human_bytes(free)} is free and "
            f"{human_bytes(margin)} stays free; free space there or point BENCH_CACHE_DIR at a larger disk"
        )


@contextlib.contextmanager
def building(entry: Path) -> Iterator[Path]:
    """Hold ``entry``'s lock, with the folder made and the ``.partial`` files of a killed build removed;
    if the block fails, an entry folder it left empty is removed."""
    from filelock import FileLock

    lock = FileLock(str(entry) + LOCK)
    with writes_in(entry.parent):
        entry.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    try:
        with writes_in(entry):
            entry.mkdir(exist_ok=True)
            for stale in entry.glob("*" + PARTIAL):
                stale.unlink()
        try:
            yield entry
        except BaseException:
            with contextlib.suppress(OSError):
                entry.rmdir()  # a build that failed before writing anything leaves no empty entry
            raise
    finally:
        lock.release()


def write_file(path: Path, chunks: Iterable[bytes], size: int) -> None:
    """Write ``chunks`` (``size`` bytes in all) to ``path`` through ``path.partial``, renamed when complete.

    The space is allocated first where the filesystem can, so a disk that cannot hold the file
    fails before the work; any failure removes the partial file, and a full disk is one line.
    """
    partial = path.with_name(path.name + PARTIAL)
    try:
        with writes_in(path.parent):
            stream = open(partial, "wb")
        with stream:
            if size and hasattr(os, "posix_fallocate"):
                try:
                    os.posix_fallocate(stream.fileno(), 0, size)
                except OSError as error:
                    if error.errno in NO_SPACE:
                        raise  # otherwise the filesystem cannot allocate ahead; the writes will tell
            for chunk in chunks:
                stream.write(chunk)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(partial, path)
    except BaseException as error:
        partial.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno in NO_SPACE:
            free, _ = disk_space(path.parent)
            raise NoSpace(f"cannot write {path}: the disk filled up ({human_bytes(free)} free, {human_bytes(size)} "
                          "needed); free space there or point BENCH_CACHE_DIR at a larger disk") from None
        raise


def write_meta(entry: Path, what: str, **facts) -> None:
    """``entry/meta.json``: what the entry holds, for ``bench cache list``."""
    text = json.dumps({"what": what, **facts}, indent=2).encode()
    write_file(entry / META, [text], len(text))


def mark_used(entry: Path) -> None:
    """Record now as ``entry``'s last use: the modification time of ``entry/last-used`` for a
    folder, of the file itself for an entry that is one file."""
    entry = Path(entry)
    with writes_in(entry):
        if entry.is_dir():
            (entry / LAST_USED).touch()
        else:
            os.utime(entry)


@dataclass(frozen=True)
class Entry:
    """One cache entry: ``harness`` is False (and ``kind`` empty) for anything under the root that the
    harness did not make."""

    kind: str
    name: str
    path: Path
    bytes: int
    last_used: float
    what: str
    harness: bool

    @property
    def label(self) -> str:
        return f"{self.kind}/{self.name}" if self.kind else self.name

    def to_dict(self) -> dict:
        return {"kind": self.kind, "name": self.name, "path": str(self.path), "bytes": self.bytes,
                "last_used": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.last_used)), "what": self.what,
                "harness": self.harness}


def _files(path: Path) -> list[Path]:
    if path.is_dir() and not path.is_symlink():
        return [p for p in path.rglob("*") if p.is_file() and not p.is_symlink()]
    return [path]


def _entry(kind: str, path: Path, harness: bool) -> Entry:
    files = _files(path)
    lock = path.with_name(path.name + LOCK)
    size = sum(f.lstat().st_size for f in files) + (lock.lstat().st_size if lock.exists() else 0)
    stamp = path / LAST_USED
    if stamp.is_file():
        last_used = stamp.stat().st_mtime
    else:  # an entry that keeps no stamp was last used when it was last written
        last_used = max((f.lstat().st_mtime for f in files), default=path.lstat().st_mtime)
    what = KINDS[kind] if harness else "not made by the harness: left alone"
    with contextlib.suppress(OSError, ValueError, AttributeError, TypeError):
        what = str(json.loads((path / META).read_text())["what"])
    return Entry(kind, path.name, path, size, last_used, what, harness)


def entries() -> list[Entry]:
    """Every entry under ``cache_root()``: one per item in each ``KINDS`` folder (lock files go with
    their entry), and one per other item of the root, marked as not the harness's."""
    root = cache_root()
    if not root.is_dir():
        return []
    found = []
    for child in sorted(root.iterdir()):
        if child.name in KINDS and child.is_dir() and not child.is_symlink():
            items = sorted(child.iterdir())
            names = {item.name for item in items}
            for item in items:
                if item.name.endswith(LOCK) and item.name[:-len(LOCK)] in names:
                    continue
                found.append(_entry(child.name, item, True))
        else:
            found.append(_entry("", child, False))
    return found


def remove(entry: Entry) -> bool:
    """Delete a harness-made entry and its lock file; False (nothing removed) while another process holds the lock."""
    from filelock import FileLock, Timeout

    if not entry.harness:
        raise ValueError(f"{entry.path} was not made by the harness")
    if entry.name.endswith(LOCK):  # a lock whose entry is gone
        entry.path.unlink(missing_ok=True)
        return True
    lock_path = entry.path.with_name(entry.path.name + LOCK)
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return False
    try:
        if entry.path.is_dir() and not entry.path.is_symlink():
            shutil.rmtree(entry.path)
        else:
            entry.path.unlink(missing_ok=True)
        lock_path.unlink(missing_ok=True)
    finally:
        lock.release()
    return True
