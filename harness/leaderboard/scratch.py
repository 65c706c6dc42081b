"""Scratch folders of ``bench leaderboard reproduce`` that a killed run cannot leave behind.

A reproduce trains in a temporary folder named ``bench-reproduce-<pid>-…``. Killed with
SIGKILL (or by the machine going down) it cannot remove it, so every reproduce first removes
the scratch folders of its own user whose process is no longer running.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

PREFIX = "bench-reproduce-"
_NAME = re.compile(rf"{PREFIX}(?P<pid>[0-9]+)-[A-Za-z0-9_]+")


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_abandoned(folder: Path | None = None) -> list[Path]:
    """Remove this user's scratch folders under ``folder`` (the temporary folder) whose process
    has ended; returns them. Links and other users' folders are left alone."""
    base = Path(folder or tempfile.gettempdir())
    removed = []
    for entry in base.glob(f"{PREFIX}*"):
        match = _NAME.fullmatch(entry.name)
        if match is None or entry.is_symlink() or not entry.is_dir() or entry.stat().st_uid != os.getuid():
            continue
        if not _running(int(match["pid"])):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


@contextlib.contextmanager
def scratch_folder() -> Iterator[Path]:
    """A new scratch folder named by this process, removed on exit."""
    with tempfile.TemporaryDirectory(prefix=f"{PREFIX}{os.getpid()}-") as folder:
        yield Path(folder)
