"""Generic file helpers: atomic writes of files and folders, JSON and ``.npz`` files that may
come from anyone, free disk space. One home for each, used by run folders, caches,
leaderboard bundles and the generated datasets alike.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from harness.errors import BadInput, UserError
from harness.typed_json import load_json

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
MAX_ARRAY_BYTES = 2 * 10**9  # far above NUS-WIDE's test scores (107,859 × 81 float32: 35 MB)
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def disk_space(folder: Path) -> tuple[int, int]:
    """(bytes free to this user, total bytes) of the filesystem holding ``folder`` or its nearest parent."""
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    usage = shutil.disk_usage(folder)
    return usage.free, usage.total


def human_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(count) < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")


def no_space(path: Path, error: OSError) -> UserError:
    """The one line for a write that found its disk full."""
    return UserError(
        f"cannot write {path}: no space left on the device ({human_bytes(disk_space(Path(path).parent)[0])} free); "
        "free some space or write elsewhere"
    )


def atomic_write(path: Path, write, *, private: bool = False) -> None:
    """Call ``write(stream)`` on a temporary file beside ``path``, then rename it to ``path``;
    ``private`` keeps it readable by its owner only (a key)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if not private:
            os.fchmod(handle, 0o666 & ~_UMASK)  # as open() would make it: mkstemp makes files private
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        if error.errno in NO_SPACE:
            raise no_space(path, error) from None
        raise
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_json(path: Path, record: Any) -> None:
    """Write ``record`` as indented JSON, atomically."""
    text = json.dumps(record, indent=2, default=_json_default) + "\n"
    atomic_write(path, lambda stream: stream.write(text.encode()))


def _json_default(value: Any):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_json(path: Path, what: str) -> Any:
    """A JSON file the harness wrote, or one line naming the file when it is missing or corrupt."""
    path = Path(path)
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file; is it a run folder made by `bench run`?") from None
    except IsADirectoryError:
        raise UserError(f"{path}: a folder, not the {what}") from None
    try:
        return load_json(text, str(path))
    except BadInput as error:
        raise BadInput(f"{error}; the {what} is corrupt") from None


@contextlib.contextmanager
def atomic_folder(target: Path) -> Iterator[Path]:
    """A staging folder beside ``target`` to fill; on success it replaces ``target`` in one
    rename (an older ``target`` is removed first), on failure it is removed. A kill leaves
    ``target`` as it was, and a hidden ``.NAME.*`` staging folder the next caller may clear."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        yield staging
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_npz(path: Path, what: str, advice: str = "") -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` archive that may come from anyone: numeric and string arrays
    only (no pickles), every member at most ``MAX_ARRAY_BYTES`` uncompressed (no zip bombs);
    anything else is one ``BadInput`` line naming the file (``advice`` ends the pickle line)."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            too_big = [i.filename for i in archive.infolist() if i.file_size > MAX_ARRAY_BYTES]
    except (OSError, zipfile.BadZipFile) as error:
        raise BadInput(f"{path}: not an .npz archive ({' '.join(str(error).split())}); give the {what} as written") from None
    if too_big:
        raise BadInput(f"{path}: {too_big[0]} unpacks to more than {human_bytes(MAX_ARRAY_BYTES)}; not a {what}")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except ValueError as error:
        if "pickle" in str(error):
            raise BadInput(f"{path}: holds Python objects, which are never loaded; a {what} holds numbers and "
                           f"strings only{advice}") from None
        raise BadInput(f"{path}: not a readable .npz file ({' '.join(str(error).split())})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as error:
        raise BadInput(f"{path}: not a readable .npz file ({' '.join(str(error).split())})") from None
