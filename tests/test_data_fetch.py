"""`bench data where|fetch`: tiny archives in the official layouts served on 127.0.0.1, resumed
downloads, refused checksums and refused archive members."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from layouts import write_coco, write_voc
from servers import Files, serving

from harness import dataset_archives
from harness.cli import main
from harness.dataset_archives import Archive, SOURCES


def _tar(source: Path, names: list[Path]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as bundle:
        for path in names:
            bundle.add(path, arcname=path.relative_to(source).as_posix(), recursive=False)
    return buffer.getvalue()


def _zip(source: Path, names: list[Path]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for path in names:
            bundle.write(path, path.relative_to(source).as_posix())
    return buffer.getvalue()


def _tree(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*"))


def official(name: str, archives: dict[str, bytes], monkeypatch, md5: bool = False) -> None:
    """Replace ``name``'s recorded archives by the tiny ones (same names and layout, their hashes)."""
    recorded = {a.filename: a for a in SOURCES[name].archives}
    tiny = tuple(Archive(filename, recorded[filename].url, recorded[filename].top,
                         sha256=hashlib.sha256(data).hexdigest(), md5=hashlib.md5(data).hexdigest() if md5 else None)
                 for filename, data in archives.items())
    monkeypatch.setitem(SOURCES, name, dataclasses.replace(SOURCES[name], archives=tiny))


def tiny_voc_archives(folder: Path) -> tuple[Path, dict[str, bytes]]:
    """The tiny VOC layout in ``folder/source`` and the two official tars made of it (the
    test split's files in the test tar)."""
    source = folder / "source"
    write_voc(source)
    paths = _tree(source)
    test_ids = set((source / "VOCdevkit/VOC2007/ImageSets/Main/test.txt").read_text().split())
    is_test = [p for p in paths if p.is_file() and (p.stem in test_ids or p.name.endswith("test.txt"))]
    rest = [p for p in paths if p not in is_test]
    return source, {"VOCtrainval_06-Nov-2007.tar": _tar(source, rest),
                    "VOCtest_06-Nov-2007.tar": _tar(source, [p.parent for p in is_test] + is_test)}


@pytest.fixture
def voc_archives(tmp_path):
    return tiny_voc_archives(tmp_path)


def _fingerprint(root: Path, dataset: str) -> str:
    result = CliRunner().invoke(main, ["data", "verify", "--dataset", dataset, "--data-root", str(root), "--json"])
    return json.loads(result.output)["fingerprint"]


def test_voc2007_is_fetched_checked_and_extracted_into_the_official_layout(voc_archives, tmp_path, monkeypatch):
    source, archives = voc_archives
    official("voc2007", archives, monkeypatch, md5=True)
    files = Files()
    files.content.update({f"/mirror/{name}": data for name, data in archives.items()})
    root = tmp_path / "data"
    with serving(files) as base:
        monkeypatch.setenv("BENCH_DATA_MIRROR", f"{base}/mirror")
        result = CliRunner().invoke(main, ["data", "fetch", "voc2007", "--data-root", str(root)])
        assert result.exit_code == 0, result.output
        assert f"bench data verify --dataset voc2007 --data-root {root}" in result.output
        again = CliRunner().invoke(main, ["data", "fetch", "voc2007", "--data-root", str(root)])
        assert again.exit_code == 0 and "already fetched" in again.output
    assert len(files.requests) == 2
    extracted = [p.relative_to(root) for p in _tree(root / "VOCdevkit")]
    assert extracted == [p.relative_to(source) for p in _tree(source / "VOCdevkit")]
    assert all((root / p).read_bytes() == (source / p).read_bytes() for p in extracted if (source / p).is_file())
    assert sorted(p.name for p in (root / ".bench-fetch").iterdir()) == [
        "VOCtest_06-Nov-2007.tar.done.json", "VOCtrainval_06-Nov-2007.tar.done.json"]
    assert _fingerprint(root, "voc2007") == _fingerprint(source, "voc2007")


def test_coco2014_zips_are_extracted_into_the_official_layout(tmp_path, monkeypatch):
    source = tmp_path / "source"
    write_coco(source)
    archives = {f"{top}.zip" if top != "annotations" else "annotations_trainval2014.zip":
                _zip(source, [p for p in _tree(source / top)]) for top in ("annotations", "train2014", "val2014")}
    official("coco2014", archives, monkeypatch)
    files = Files()
    files.content.update({f"/{name}": data for name, data in archives.items()})
    with serving(files) as base:
        monkeypatch.setenv("BENCH_DATA_MIRROR", base)
        result = CliRunner().invoke(main, ["data", "fetch", "coco2014", "--data-root", str(tmp_path / "coco")])
    assert result.exit_code == 0, result.output
    assert _fingerprint(tmp_path / "coco", "coco2014") == _fingerprint(source, "coco2014")


def test_an_interrupted_download_resumes_with_a_range_request(voc_archives, tmp_path, monkeypatch):
    _, archives = voc_archives
    official("voc2007", archives, monkeypatch)
    files = Files()
    files.content.update({f"/{name}": data for name, data in archives.items()})
    files.cut["/VOCtrainval_06-Nov-2007.tar"] = 3000
    root = tmp_path / "data"
    with serving(files) as base:
        monkeypatch.setenv("BENCH_DATA_MIRROR", base)
        first = CliRunner().invoke(main, ["data", "fetch", "voc2007", "--data-root", str(root)])
        assert first.exit_code == 1
        assert "run the same command again to resume" in first.output.strip().splitlines()[-1]
        part = root / ".bench-fetch" / "VOCtrainval_06-Nov-2007.tar.part"
        assert part.stat().st_size == 3000 and not (root / "VOCdevkit").exists()
        second = CliRunner().invoke(main, ["data", "fetch", "voc2007", "--data-root", str(root)])
    assert second.exit_code == 0, second.output
    assert files.requests[1] == ("GET", "/VOCtrainval_06-Nov-2007.tar", "bytes=3000-")
    assert "resuming at byte 3000" in second.output
    assert (root / "VOCdevkit" / "VOC2007" / "ImageSets" / "Main" / "test.txt").is_file()


def test_an_archive_with_another_checksum_is_deleted_and_refused(voc_archives, tmp_path, monkeypatch):
    _, archives = voc_archives
    official("voc2007", archives, monkeypatch)
    files = Files()
    files.content.update({f"/{name}": data for name, data in archives.items()})
    corrupted = bytearray(archives["VOCtrainval_06-Nov-2007.tar"])
    corrupted[5000] ^= 1
    files.content["/VOCtrainval_06-Nov-2007.tar"] = bytes(corrupted)
    root = tmp_path / "data"
    with serving(files) as base:
        monkeypatch.setenv("BENCH_DATA_MIRROR", base)
        result = CliRunner().invoke(main, ["data", "fetch", "voc2007", "--data-root", str(root)])
    assert result.exit_code == 1
    line = result.output.strip().splitlines()[-1]
    recorded = hashlib.sha256(archives["VOCtrainval_06-Nov-2007.tar"]).hexdigest()
    assert f"VOCtrainval_06-Nov-2007.tar: sha256 {hashlib.sha256(corrupted).hexdigest()} is not the official {recorded}" in line
    assert list((root / ".bench-fetch").iterdir()) == [] and not (root / "VOCdevkit").exists()


def _malicious_tar(kind: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as bundle:
        def add(name: str, data: bytes = b"x", **fields) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            for key, value in fields.items():
                setattr(info, key, value)
            bundle.addfile(info, io.BytesIO(data) if info.isfile() else None)

        add("VOCdevkit/VOC2007/ImageSets/Main/test.txt", b"000001\n")
        if kind == "dotdot":
            add("VOCdevkit/../../escaped.txt")
        elif kind == "absolute":
            add("/tmp/escaped.txt")
        elif kind == "symlink":
            add("VOCdevkit/link", type=tarfile.SYMTYPE, linkname="/etc")
        elif kind == "hardlink":
            add("VOCdevkit/hard", type=tarfile.LNKTYPE, linkname="/etc/passwd")
        elif kind == "outside layout":
            add("escaped.txt")
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "hardlink", "outside layout"])
def test_an_archive_with_a_dangerous_member_is_refused_before_anything_is_extracted(kind, tmp_path):
    data = _malicious_tar(kind)
    archive = Archive("VOCtest_06-Nov-2007.tar", "unused", ("VOCdevkit",), sha256=hashlib.sha256(data).hexdigest())
    path = tmp_path / "download.tar"
    path.write_bytes(data)
    root = tmp_path / "data" / "inner"
    root.mkdir(parents=True)
    with pytest.raises(dataset_archives.UserError, match="the archive is refused and nothing was extracted"):
        dataset_archives._extract(archive, path, root)
    assert list(root.iterdir()) == [] and not (tmp_path / "data" / "escaped.txt").exists()


def test_a_zip_member_with_dotdot_is_refused(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("train2014/ok.jpg", b"x")
        bundle.writestr("train2014/../../escaped.txt", b"x")
    path = tmp_path / "train2014.zip"
    path.write_bytes(buffer.getvalue())
    archive = Archive("train2014.zip", "unused", ("train2014",))
    with pytest.raises(dataset_archives.UserError, match="'train2014/../../escaped.txt' lies outside train2014/"):
        dataset_archives._extract(archive, path, tmp_path / "root")
    assert not (tmp_path / "root").exists() and not (tmp_path / "escaped.txt").exists()


def test_a_users_file_with_other_content_is_refused_not_replaced(voc_archives, tmp_path):
    _, archives = voc_archives
    data = archives["VOCtest_06-Nov-2007.tar"]
    path = tmp_path / "test.tar"
    path.write_bytes(data)
    root = tmp_path / "data"
    mine = root / "VOCdevkit" / "VOC2007" / "ImageSets" / "Main" / "test.txt"
    mine.parent.mkdir(parents=True)
    mine.write_text("my own list\n")
    archive = Archive("VOCtest_06-Nov-2007.tar", "unused", ("VOCdevkit",))
    with pytest.raises(dataset_archives.UserError, match="exists with other content"):
        dataset_archives._extract(archive, path, root)
    assert mine.read_text() == "my own list\n"


def test_where_lists_the_official_archives_and_nuswide_is_not_fetched(tmp_path):
    result = CliRunner().invoke(main, ["data", "where", "coco2014", "--json"])
    assert result.exit_code == 0
    found = json.loads(result.output)
    assert [a["url"] for a in found["archives"]] == [
        "http://images.cocodataset.org/annotations/annotations_trainval2014.zip",
        "http://images.cocodataset.org/zips/train2014.zip", "http://images.cocodataset.org/zips/val2014.zip"]
    assert found["archives"][1]["sha256"] == "ede4087e640bddba550e090eae701092534b554b42b05ac33f0300b984b31775"
    assert found["archives"][1]["size"] is None
    text = CliRunner().invoke(main, ["data", "where", "voc2007"]).output
    assert "c52e279531787c972589f7e41ab4ae64" in text and "bench data verify --dataset voc2007 --data-root DIR" in text
    refused = CliRunner().invoke(main, ["data", "fetch", "nuswide", "--data-root", str(tmp_path / "n")])
    assert refused.exit_code == 1 and "`bench data where nuswide`" in refused.output
    assert not (tmp_path / "n").exists()
    unknown = CliRunner().invoke(main, ["data", "where", "imagenet"])
    assert unknown.exit_code == 1 and "known: coco2014, nuswide, voc2007" in unknown.output
