"""What ``bench leaderboard build`` wrote: its manifest of generated files, and the checks
that keep it from following a link or deleting what it did not write.

``tables/generated-files.txt`` lists, one per line, every file of ``tables/`` that the last
build wrote and did not remove (by name). A later build removes a file
only when this manifest lists it and it is no longer generated; a file someone else put in
``tables/`` is never touched. The manifest comes with the repository, so it is read as a
stranger's file: every entry must be ``<plain name>.<format>``, or the build stops
with one line naming the entry. An output folder or file that is a symbolic link (or not a
regular file) is refused before anything is read or written, so no build writes or deletes
through a link.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Iterable

from harness.errors import BadInput, UserError

MANIFEST = "tables/generated-files.txt"
MAX_MANIFEST_BYTES = 10**6
_HEADER = ("# Written by `bench leaderboard build`: the files it generated, which a later build may replace or "
           "remove. Do not edit.")
FOLDER = "tables"
_ENTRY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=@,-]{0,199}\.(md|csv|tex|html)")


def check_folder(root: Path, folder: str) -> None:
    """``root/folder`` is absent or a real folder: a link (or a file) in its place is refused."""
    path = Path(root) / folder
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISLNK(mode):
        raise UserError(f"{path}: a symbolic link; build writes its output only into a real folder: replace the link "
                        "with a folder")
    if not stat.S_ISDIR(mode):
        raise UserError(f"{path}: not a folder; move it away so that build can write its output there")


def check_file(path: Path) -> bool:
    """Whether an output file exists; a link or anything but a regular file there is refused."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(mode):
        kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
        raise UserError(f"{path}: {kind} where build writes a generated file; remove it (build never writes through "
                        "a link)")
    return True


def read_manifest(root: Path) -> list[str]:
    """The files the last build generated, relative to ``root`` (none when there is no
    manifest), each entry checked."""
    path = Path(root) / MANIFEST
    if not check_file(path):
        return []
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise BadInput(f"{path}: larger than {MAX_MANIFEST_BYTES} bytes; restore it from version control")
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line or line.startswith("#"):
            continue
        if not _ENTRY.fullmatch(line):
            raise BadInput(f"{path}: line {number} {line[:80]!r} is not <plain name>.<md|csv|tex|html>; build "
                           "removes only files it generated: restore the manifest from version control")
        entries.append(f"{FOLDER}/{line}")
    return entries


def manifest_text(names: Iterable[str]) -> str:
    """The manifest listing ``names`` (relative to the leaderboards folder, all in ``tables/``)."""
    return "\n".join([_HEADER, *sorted({name.split("/", 1)[1] for name in names})]) + "\n"


def entry_format(name: str) -> str:
    return name.rsplit(".", 1)[1]
