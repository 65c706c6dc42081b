"""The on-disk store of submissions under ``root/submissions`` (``bundle`` describes the
layout): where a bundle's folder lies, listing and finding the stored bundles, and writing a
bundle and its plugins' code (``plugins/<sha256>.py``, ``plugins/<sha256>/``), all atomically
and only under ``root``."""

from __future__ import annotations

import shutil
from pathlib import Path

from harness.errors import UserError
from harness.files import atomic_folder, atomic_write, write_json
from harness.leaderboard.bundle import (
    BUNDLE_NAME,
    ID_LENGTH,
    PLUGINS,
    SUBMISSIONS,
    Bundle,
    StoredSource,
    check_tree,
    read_bundle,
)
from harness.naming import code_sha256, package_files, plain_name
from harness.results import RunRecord


def submission_folder(root: Path, record: RunRecord, where: str) -> Path:
    """``root/submissions/<dataset>/<protocol>``, both names checked to be plain."""
    return (Path(root) / SUBMISSIONS / plain_name(record.dataset.name, f"{where}: dataset.name")
            / plain_name(record.protocol.name, f"{where}: protocol.name"))


def stored_bundles(root: Path) -> list[Bundle]:
    """Every stored bundle under ``root/submissions``, in file-name order, once the folder is
    checked to hold regular files and folders only."""
    base = Path(root) / SUBMISSIONS
    if not base.is_dir():
        return []
    check_tree(base)
    return [read_bundle(p) for p in sorted(base.glob("*/*/*.json")) if BUNDLE_NAME.fullmatch(p.name)]


def find_bundle(root: Path, value: str) -> Bundle:
    """The stored submission named by ``value``: its file (under ``root/submissions``), its
    id, or ``<run-id>--<id>``."""
    base = (Path(root) / SUBMISSIONS).resolve()
    bundles = stored_bundles(root)
    candidate = Path(value).expanduser()
    if candidate.suffix == ".json" and candidate.is_file():
        found = [b for b in bundles if b.path.resolve() == candidate.resolve()]
        if not found:
            raise UserError(f"{value}: not a submission under {base}; pass --leaderboards with the folder that holds it")
        return found[0]
    found = [b for b in bundles if value in (b.id, b.stem)]
    if not found:
        raise UserError(f"no stored submission {value!r} under {base}; give a submission file or its {ID_LENGTH}-digit id")
    return found[0]


def source_path(root: Path, source: StoredSource) -> Path:
    """Where the code of a stored plugin lies."""
    base = Path(root) / SUBMISSIONS / PLUGINS
    return base / (f"{source.sha256}.py" if source.kind == "file" else source.sha256)


def copy_code(original: Path, target: Path, kind: str) -> None:
    """Copy a plugin's code to ``target``: the file, or the ``package_files`` of a folder (its
    ``.py`` and license files: what its sha256 covers, so nothing unhashed comes along; each
    path segment checked, links refused)."""
    if kind == "file":
        data = Path(original).read_bytes()
        atomic_write(target, lambda stream: stream.write(data))
        return
    for file in package_files(original):
        relative = file.relative_to(original)
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, target / relative)


def store_source(root: Path, source: StoredSource, original: Path) -> None:
    """Copy a plugin's code into ``plugins/`` unless that content is already there."""
    target = source_path(root, source)
    if code_sha256(target, source.kind) == source.sha256:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.kind == "file":
        copy_code(original, target, "file")
        return
    with atomic_folder(target) as staging:
        copy_code(original, staging, "directory")


def write_bundle(path: Path, bundle: Bundle) -> None:
    write_json(path, bundle.to_dict())
