"""Which stored submissions were already checked: a record beside the tables, so that ``build``
and ``submit`` check again only bundles that are new or changed.

``checked-bundles.json`` (beside ``tables/`` and ``submissions/``) holds one entry per checked submission: the *digest* of the
files its checks read (sha256 of the bundle file, its scores file and its verification, or
their absence, with the bundle's path), what the tables and ``submit`` need of it
(``Checked``), and an HMAC-SHA256 of both under the *checker* (the sha256 of this harness's
code and built-in plugins, its version, and the canonical fingerprints its registry
declares). The HMAC key is 32 random bytes made on first use in the user's cache folder
(``cache_root()/leaderboard-record.key``, mode 0600), never in the repository. So an entry
edited by hand, forged for a new bundle, copied from another machine, or written by other
code does not match its HMAC, and its bundle is checked again: the record can make a build
faster, never make an unchecked bundle pass. A fusion's entry also names its members'
digests, and a submission's stored plugin code is hashed again on every build. The record
itself is read as a stranger's file (a regular file of bounded size, every key and type
checked); one that does not parse counts as empty, and the next build rewrites it.
``build --check`` ignores the record and checks everything.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import __version__
from harness.errors import UserError
from harness.leaderboard.bundle import (
    BUNDLE_NAME,
    SUBMISSIONS,
    Bundle,
    StoredSource,
    check_tree,
    read_bundle,
    regular_file,
)
from harness.leaderboard.rows import configuration, seed_label, submission_row
from harness.leaderboard.signing import ALLOWED_SIGNERS, read_signed
from harness.leaderboard.store import source_path
from harness.naming import canonical_json, code_sha256, sha256_of
from harness.results import load_json
from harness.files import atomic_write

RECORD_FILE = "checked-bundles.json"
KEY_FILE = "leaderboard-record.key"
RECORD_VERSION = 1
# An entry is a few kB (the row's per-class AP and class names); 100,000 of them fit.
MAX_RECORD_BYTES = 1000 * 10**6
_HEX64 = frozenset("0123456789abcdef")


@dataclass(kw_only=True)
class Checked:
    """What ``build`` and ``submit`` use of a stored submission once it passed every check:
    ``row`` is ``rows.submission_row``; ``fused`` is False for a fusion that could not be fused
    again here; ``verified`` whether its own verification names its content."""

    id: str
    path: str
    content_sha256: str
    scores_sha256: str
    data: str
    dataset: str
    protocol: str
    members: list[str] | None
    member_digests: list[str]
    sources: list[list[str]]
    fused: bool
    verified: bool
    configuration: dict[str, str]
    seed: str
    row: dict[str, Any]


def _digest_or_absent(path: Path) -> str:
    return sha256_of(path) if os.path.lexists(path) else "absent"


def digest(root: Path, path: Path) -> str:
    """sha256 over a bundle's path (relative to ``root``), the bytes of its bundle, scores and
    verification files and the maintainers' keys (``allowed_signers``, which decide whether a
    verification counts): any edit, addition or removal changes it."""
    stem = path.name[: -len(".json")]
    parts = [path.relative_to(root).as_posix()] + [
        _digest_or_absent(path.with_name(name)) for name in (path.name, f"{stem}.scores.npz", f"{stem}.verified.json")]
    parts.append(_digest_or_absent(Path(root) / ALLOWED_SIGNERS))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def checker_sha256(registry) -> str:
    """The checks' own identity: harness and built-in plugin code, version, declared canonical fingerprints."""
    package = Path(__file__).resolve().parents[1]
    declared = {}
    for component in registry.components("dataset"):
        declared[component.name] = getattr(component.spec, "canonical_fingerprint", None)
    return hashlib.sha256(canonical_json([__version__, code_sha256(package), code_sha256(package.parent / "plugins"),
                                          declared]).encode()).hexdigest()


def _secret() -> bytes:
    """The HMAC key, made on first use (never in the repository: see the module docstring)."""
    from harness.cache import cache_root

    path = cache_root() / KEY_FILE
    if not path.is_file():
        key = os.urandom(32)
        atomic_write(path, lambda stream: stream.write(key), private=True)
    key = regular_file(path, "leaderboard record key", 64).read_bytes()
    if len(key) != 32:
        raise UserError(f"{path}: not a 32-byte key; delete it (the next build makes a new one and checks every "
                        "submission again)")
    return key


def _mac(key: bytes, checker: str, entry_digest: str, text: str) -> str:
    return hmac.new(key, f"{checker}\n{entry_digest}\n{text}".encode(), hashlib.sha256).hexdigest()


def _hex64(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX64


@dataclass
class Record:
    """The trusted entries of a record by digest: each ``Checked`` with the JSON text its HMAC covers."""

    checker: str
    entries: dict[str, tuple[Checked, str]]


def load_record(root: Path, checker: str) -> Record:
    """The entries of ``root/checked-bundles.json`` whose HMAC matches; none when there is no
    record or it does not parse."""
    record = Record(checker, {})
    path = Path(root) / RECORD_FILE
    if not os.path.lexists(path):
        return record
    try:
        data = load_json(regular_file(path, "checked record", MAX_RECORD_BYTES).read_bytes(), str(path))
    except UserError:
        return record
    if not isinstance(data, dict) or data.get("record_version") != RECORD_VERSION or data.get("checker") != checker:
        return record
    entries = data.get("entries")
    if not isinstance(entries, dict):
        return record
    key = _secret()
    fields = {f.name for f in dataclasses.fields(Checked)}
    for entry_digest, entry in entries.items():
        if not (_hex64(entry_digest) and isinstance(entry, dict) and _hex64(entry.get("mac"))
                and isinstance(entry.get("checked"), str)):
            continue
        text = entry["checked"]
        if hmac.compare_digest(entry["mac"], _mac(key, checker, entry_digest, text)):
            values = json.loads(text)
            if isinstance(values, dict) and set(values) == fields:
                record.entries[entry_digest] = (Checked(**values), text)
    return record


def save_record(root: Path, record: Record) -> None:
    """Write ``record``, each entry with its HMAC, atomically (compact JSON: it is read by builds only)."""
    key = _secret()
    entries = {entry_digest: {"checked": text, "mac": _mac(key, record.checker, entry_digest, text)}
               for entry_digest, (_, text) in sorted(record.entries.items())}
    data = json.dumps({"record_version": RECORD_VERSION, "checker": record.checker, "entries": entries}).encode()
    atomic_write(Path(root) / RECORD_FILE, lambda stream: stream.write(data))


def entry_text(item: Checked) -> str:
    return json.dumps(dataclasses.asdict(item), sort_keys=True)


def _summary(bundle: Bundle, root: Path, fused: bool, digests: dict[str, str]) -> Checked:
    record = bundle.record
    members = list(bundle.members) if bundle.members else None
    return Checked(
        id=bundle.id, path=bundle.path.relative_to(root).as_posix(), content_sha256=bundle.content_sha256,
        scores_sha256=bundle.scores_sha256, data=bundle.data, dataset=record.dataset.name,
        protocol=record.protocol.name, members=members,
        member_digests=[digests[member] for member in members or []],
        sources=[[s.kind, s.sha256] for s in bundle.sources], fused=fused,
        verified=read_signed(bundle) is not None, configuration=configuration(record), seed=seed_label(record),
        row=json.loads(json.dumps(submission_row(record, bundle.data, bundle.path.relative_to(root).as_posix()))),
    )


def _still_valid(item: Checked, root: Path, digests: dict[str, str]) -> bool:
    """A recorded entry's members are still the files it was checked with, and its stored
    plugin code still hashes to its name."""
    if [digests.get(member) for member in item.members or []] != item.member_digests:
        return False
    return all(code_sha256(source_path(root, StoredSource(kind=kind, sha256=sha)), kind) == sha
               for kind, sha in item.sources)


def checked_submissions(root: Path, registry, *, incremental: bool) -> tuple[list[Checked], int]:
    """Every stored submission, checked (``submission_check.check_stored``) unless ``incremental`` and the
    record holds it unchanged, with no configuration and seed and no scores stored twice;
    returns them in file-name order and how many were checked now. With ``incremental`` the
    record is rewritten to hold exactly the stored submissions."""
    from harness.leaderboard.submission_check import check_stored

    root = Path(root)
    base = root / SUBMISSIONS
    if not base.is_dir():
        return [], 0
    check_tree(base)
    paths = [p for p in sorted(base.glob("*/*/*.json")) if BUNDLE_NAME.fullmatch(p.name)]
    ids = {BUNDLE_NAME.fullmatch(p.name)["id"]: p for p in paths}
    own = {identifier: digest(root, path) for identifier, path in ids.items()}
    checker = checker_sha256(registry) if incremental else ""
    record = load_record(root, checker) if incremental else Record(checker, {})
    bundles: dict[str, Bundle] = {}

    def bundle_of(identifier: str) -> Bundle:
        if identifier not in bundles:
            bundles[identifier] = read_bundle(ids[identifier])
        return bundles[identifier]

    checked, now, fresh = [], Record(checker, {}), 0
    for identifier, path in ids.items():
        item, text = record.entries.get(own[identifier], (None, None))
        if item is None or not _still_valid(item, root, own):
            bundle = bundle_of(identifier)
            by_id = {m: bundle_of(m) for m in bundle.members or [] if m in ids}
            fused = check_stored(bundle, by_id, root, registry)
            item = _summary(bundle, root, fused, own)
            text = entry_text(item)
            fresh += 1
        checked.append(item)
        now.entries[own[identifier]] = (item, text)
    seen: dict[str, Checked] = {}
    for item in checked:
        for kind, value in (("configuration and seed", repr((item.configuration, item.seed))),
                            ("scores, labels and ids", item.scores_sha256)):
            if value in seen:
                raise UserError(f"{root / item.path}: the same {kind} as {root / seen[value].path}; one run is stored "
                                "once: remove one of them")
            seen[value] = item
    if incremental and (fresh or now.entries.keys() != record.entries.keys()):
        save_record(root, now)
    return checked, fresh


def verification_status(item: Checked, by_id: dict[str, Checked]) -> bool:
    """True for a submission with a verification of its own content, and for a fusion fused
    again here from verified members."""
    if item.members:
        return item.fused and all(verification_status(by_id[m], by_id) for m in item.members)
    return item.verified

