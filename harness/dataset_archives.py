"""Where the benchmark datasets come from, and ``bench data fetch`` for those with stable public archives.

``SOURCES`` holds, per dataset, the official archives (URL, size, sha256, md5 where a
source records them; ``None`` where none does: the harness never states a number it cannot
source) and the layout ``--data-root`` holds after extraction. ``docs/DATASETS.md`` is the
same in prose. The sha256 values are those torchvision's dataset code records; the VOC md5
values are those of ``torchvision.datasets.VOCDetection``.

``fetch`` downloads each archive into ``DATA_ROOT/.bench-fetch/`` (resuming a ``.part`` file
with an HTTP ``Range`` request), checks every recorded hash, refuses archives with members
that are links, absolute, hold ``..`` or lie outside the official layout, extracts member by
member (each file written atomically, an existing file with other content refused, never
replaced), then deletes the archive and leaves a marker so a second fetch skips it.
``$BENCH_DATA_MIRROR`` (a base URL) replaces the host and folder of every archive URL.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import stat
import tarfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

from harness.errors import UserError, one_line
from harness.files import atomic_write, write_json

CHUNK = 1 << 20
FETCH_FOLDER = ".bench-fetch"


@dataclass(frozen=True)
class Archive:
    """One official archive: ``top`` are the folders its members must lie in."""

    filename: str
    url: str
    top: tuple[str, ...]
    sha256: str | None = None
    md5: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class Source:
    """A dataset's official origin: ``archives`` empty when there is no stable public one."""

    name: str
    homepage: str
    archives: tuple[Archive, ...]
    layout: tuple[str, ...]
    note: str = ""


VOC_URL = "http://host.robots.ox.ac.uk/pascal/VOC/voc2007"
COCO_URL = "http://images.cocodataset.org"

SOURCES = {
    "voc2007": Source(
        name="voc2007",
        homepage="http://host.robots.ox.ac.uk/pascal/VOC/voc2007/",
        archives=(
            Archive("VOCtrainval_06-Nov-2007.tar", f"{VOC_URL}/VOCtrainval_06-Nov-2007.tar", ("VOCdevkit",),
                    sha256="7d8cd951101b0957ddfd7a530bdc8a94f06121cfc1e511bb5937e973020c7508",
                    md5="c52e279531787c972589f7e41ab4ae64"),
            Archive("VOCtest_06-Nov-2007.tar", f"{VOC_URL}/VOCtest_06-Nov-2007.tar", ("VOCdevkit",),
                    sha256="6836888e2e01dca84577a849d339fa4f73e1e4f135d312430c4856b5609b4892",
                    md5="b6e924de25625d8de591ea690078ad9f"),
        ),
        layout=("VOCdevkit/VOC2007/JPEGImages/", "VOCdevkit/VOC2007/Annotations/", "VOCdevkit/VOC2007/ImageSets/Main/"),
    ),
    "coco2014": Source(
        name="coco2014",
        homepage="https://cocodataset.org/#download",
        archives=(
            Archive("annotations_trainval2014.zip", f"{COCO_URL}/annotations/annotations_trainval2014.zip",
                    ("annotations",), sha256="031296bbc80c45a1d1f76bf9a90ead27e94e99ec629208449507a4917a3bf009"),
            Archive("train2014.zip", f"{COCO_URL}/zips/train2014.zip", ("train2014",),
                    sha256="ede4087e640bddba550e090eae701092534b554b42b05ac33f0300b984b31775"),
            Archive("val2014.zip", f"{COCO_URL}/zips/val2014.zip", ("val2014",),
                    sha256="fe9be816052049c34717e077d9e34aa60814a55679f804cd043e3cbee3b9fde0"),
        ),
        layout=("annotations/instances_train2014.json", "annotations/instances_val2014.json", "train2014/", "val2014/"),
    ),
    "nuswide": Source(
        name="nuswide",
        homepage="https://lms.comp.nus.edu.sg/wp-content/uploads/2019/research/nuswide/NUS-WIDE.html",
        archives=(),
        layout=("Concepts81.txt", "ImageList/TrainImagelist.txt", "ImageList/TestImagelist.txt",
                "Groundtruth/TrainTestLabels/", "Flickr/"),
        note="the concept list, image lists and ground truth are separate downloads of the homepage, and the "
             "images are not a stable public archive (Flickr URLs, or the authors on request): no URL, size or "
             "checksum is recorded and `bench data fetch` does not fetch it",
    ),
}


def source(name: str) -> Source:
    """The source of dataset ``name``, or one line listing the known ones."""
    if name not in SOURCES:
        raise UserError(f"no recorded source for dataset {name!r}; known: {', '.join(sorted(SOURCES))} "
                        "(a plugin's dataset documents its own)")
    return SOURCES[name]


def archive_url(archive: Archive) -> str:
    """The archive's URL, or ``$BENCH_DATA_MIRROR/<file name>`` when a mirror is set."""
    mirror = os.environ.get("BENCH_DATA_MIRROR", "").rstrip("/")
    return f"{mirror}/{archive.filename}" if mirror else archive.url


def fetch(name: str, data_root: Path, report: Callable[[str], None] = lambda line: None) -> Path:
    """Download, check and extract every archive of ``name`` into ``data_root``; returns it."""
    found = source(name)
    if not found.archives:
        raise UserError(f"{name} has no stable public archive to fetch; `bench data where {name}` says what to get "
                        "and where to put it")
    data_root = Path(data_root).expanduser()
    folder = data_root / FETCH_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for archive in found.archives:
        marker = folder / f"{archive.filename}.done.json"
        if marker.is_file():
            report(f"{archive.filename}: already fetched and extracted")
            continue
        path = folder / archive.filename
        if not path.is_file():
            _download(archive_url(archive), path, report)
        _check(archive, path)
        report(f"{archive.filename}: checksum OK, extracting")
        _extract(archive, path, data_root)
        write_json(marker, {"url": archive_url(archive), "sha256": archive.sha256, "md5": archive.md5})
        path.unlink()
    return data_root


def _download(url: str, path: Path, report: Callable[[str], None]) -> None:
    """``url`` to ``path`` through ``path.part``, resuming the part with a ``Range`` request."""
    part = path.with_name(path.name + ".part")
    start = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as error:
        if error.code == 416 and start:
            part.replace(path)
            return
        raise UserError(f"{url}: HTTP {error.code} {error.reason}; check the URL (or $BENCH_DATA_MIRROR) and try again") from None
    except (urllib.error.URLError, OSError) as error:
        raise UserError(f"{url}: cannot connect ({one_line(error, 100)}); fetch needs network: run it where there is some") from None
    with response:
        resumed = response.status == 206 and response.headers.get("Content-Range", "").startswith(f"bytes {start}-")
        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        report(f"{path.name}: {'resuming at byte ' + str(start) if resumed else 'downloading'} from {url}")
        received = 0
        with part.open("ab" if resumed else "wb") as stream:
            try:
                for chunk in iter(lambda: response.read(CHUNK), b""):
                    stream.write(chunk)
                    received += len(chunk)
            except (OSError, ValueError, http.client.HTTPException) as error:
                raise _stopped(url, part, f"({one_line(error, 80)})") from None
        if expected is not None and received < expected:
            raise _stopped(url, part, f"after {received} of {expected} bytes")
    part.replace(path)


def _stopped(url: str, part: Path, how: str) -> UserError:
    return UserError(f"{url}: the download stopped {how}; {part} is kept: run the same command again to resume")


def _digests(path: Path) -> tuple[str, str, int]:
    sha256, md5, size = hashlib.sha256(), hashlib.md5(), 0
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(CHUNK), b""):
            sha256.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    return sha256.hexdigest(), md5.hexdigest(), size


def _check(archive: Archive, path: Path) -> None:
    """Every hash and the size the source records; a mismatch deletes the download and is one line."""
    sha256, md5, size = _digests(path)
    for what, recorded, found in (("sha256", archive.sha256, sha256), ("md5", archive.md5, md5),
                                  ("size", archive.size, size)):
        if recorded is not None and recorded != found:
            path.unlink()
            raise UserError(f"{archive.filename}: {what} {found} is not the official {recorded}; the download was "
                            "deleted: run the command again (or check $BENCH_DATA_MIRROR)")


def _member_path(archive: Archive, name: str) -> PurePosixPath:
    """The relative path of member ``name``, refused when absolute, with ``..``, or outside the layout."""
    member = PurePosixPath(name)
    if (member.is_absolute() or "\\" in name or ".." in member.parts or not member.parts
            or (member.parts[0].endswith(":")) or member.parts[0] not in archive.top):
        raise UserError(f"{archive.filename}: member {name!r} lies outside {', '.join(archive.top)}/; "
                        "the archive is refused and nothing was extracted (not the official archive?)")
    return member


def _members(archive: Archive, path: Path) -> Iterator[tuple[PurePosixPath, bool, Callable]]:
    """(relative path, is a folder, opener) of every member, after checking them all."""
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as bundle:
            entries = bundle.infolist()
            for entry in entries:
                if stat.S_ISLNK(entry.external_attr >> 16):
                    raise _link(archive, entry.filename)
                _member_path(archive, entry.filename)
            for entry in entries:
                yield _member_path(archive, entry.filename), entry.is_dir(), lambda e=entry: bundle.open(e)
        return
    with tarfile.open(path) as bundle:
        entries = bundle.getmembers()
        for entry in entries:
            if not (entry.isfile() or entry.isdir()):
                raise _link(archive, entry.name)
            _member_path(archive, entry.name)
        for entry in entries:
            yield _member_path(archive, entry.name), entry.isdir(), lambda e=entry: bundle.extractfile(e)


def _link(archive: Archive, name: str) -> UserError:
    return UserError(f"{archive.filename}: member {name!r} is a link or special file; the archive is refused "
                     "and nothing was extracted (not the official archive?)")


def _extract(archive: Archive, path: Path, data_root: Path) -> None:
    """Extract the checked members into ``data_root``, each file atomically; a file already
    there with other content is refused, never replaced."""
    for member, is_folder, opener in _members(archive, path):
        target = data_root.joinpath(*member.parts)
        if is_folder:
            target.mkdir(parents=True, exist_ok=True)
            continue
        with opener() as stream:
            if target.exists():
                if not target.is_file() or not _same(stream, target):
                    raise UserError(f"{target} exists with other content than {archive.filename}'s; move it "
                                    "away and run the command again")
                continue
            atomic_write(target, lambda out: shutil.copyfileobj(stream, out, CHUNK))


def _same(stream, target: Path) -> bool:
    with target.open("rb") as existing:
        for chunk in iter(lambda: stream.read(CHUNK), b""):
            if existing.read(len(chunk)) != chunk:
                return False
        return existing.read(1) == b""


def describe(name: str) -> dict:
    """What ``bench data where`` prints: the source as plain data."""
    found = source(name)
    return {"dataset": found.name, "homepage": found.homepage, "note": found.note or None,
            "archives": [{"file": a.filename, "url": archive_url(a), "size": a.size, "sha256": a.sha256,
                          "md5": a.md5} for a in found.archives],
            "layout": list(found.layout)}

