"""Pretrained weights from local files only: never a download, never a silent fallback.

A model's ``build(num_classes, pretrained=True)`` asks for its weights by the file name
torchvision (or the plugin) publishes, e.g. ``resnet101-63fe2227.pth``. The file is taken
from ``--pretrained PATH`` when the user gave one, else from the torch hub cache
(``$TORCH_HOME/hub/checkpoints/``, the folder torchvision itself downloads into). Every file
used is recorded with its sha256, and the run stores the record.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import socket
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from harness.errors import UserError
from harness.naming import sha256_of


@dataclass
class WeightsRecord:
    """The weights files a model build loaded (filled in by ``resolve``)."""

    override: Path | None = None
    files: list[dict] = field(default_factory=list)


_active: contextvars.ContextVar[WeightsRecord | None] = contextvars.ContextVar("weights", default=None)


def hub_checkpoint_dir() -> Path:
    """``$TORCH_HOME/hub/checkpoints`` (torch's default: ``~/.cache/torch``), the real one
    also while ``no_network`` points torch's own hub folder elsewhere."""
    if _offline:
        return Path(_offline[0]) / "checkpoints"
    return Path(_hub_dir()) / "checkpoints"


def _hub_dir() -> str:
    """torch's hub folder, as ``torch.hub.get_dir`` gives it, without importing torch."""
    if "torch.hub" in sys.modules:
        return sys.modules["torch.hub"].get_dir()
    cache = os.getenv("XDG_CACHE_HOME", os.path.join("~", ".cache"))
    return os.path.join(os.path.expanduser(os.getenv("TORCH_HOME", os.path.join(cache, "torch"))), "hub")


# The real hub folder of each active ``no_network`` block (outermost first); empty when none is.
_offline: list[str] = []


def _refuse(what: str):
    def refused(*args, **kwargs):
        raise UserError(f"plugin code tried the network ({what(*args, **kwargs)}) during plugin import or build; "
                        f"harness.weights loads weights from local files only: put the file in {hub_checkpoint_dir()} "
                        "and load it with harness.weights.load_state_dict, or pass --pretrained PATH")

    return refused


@contextlib.contextmanager
def no_network() -> Iterator[None]:
    """Run plugin code (its import, ``build``) offline: torch's hub folder is an empty
    temporary one (so nothing cached there is loaded unrecorded), and
    ``torch.hub.load_state_dict_from_url``, ``download_url_to_file``, name look-ups and
    Internet socket connections raise one ``UserError`` line naming ``harness.weights``.
    Weights come from ``load_state_dict``, recorded with their sha256; a download would
    give a run weights nobody recorded. Nested blocks patch once."""
    if _offline:
        yield
        return
    patches = [(socket, "getaddrinfo", _refuse(lambda host, *a, **k: f"name look-up of {host}")),
               (socket.socket, "connect", _internet_only(socket.socket.connect)),
               (socket.socket, "connect_ex", _internet_only(socket.socket.connect_ex))]
    hub = sys.modules.get("torch.hub")
    if hub is not None:
        patches += [(hub, "load_state_dict_from_url", _refuse(lambda url, *a, **k: f"load_state_dict_from_url {url}")),
                    (hub, "download_url_to_file", _refuse(lambda url, *a, **k: f"download_url_to_file {url}"))]
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    previous_home = os.environ.get("TORCH_HOME")
    previous_hub = getattr(hub, "_hub_dir", None)
    _offline.append(_hub_dir())
    with tempfile.TemporaryDirectory(prefix="bench-offline-hub-") as empty:
        os.environ["TORCH_HOME"] = empty
        if hub is not None:
            hub._hub_dir = None  # torch.hub.set_dir's setting; get_dir then follows $TORCH_HOME
        for owner, name, replacement in patches:
            setattr(owner, name, replacement)
        try:
            yield
        finally:
            for owner, name, original in saved:
                setattr(owner, name, original)
            if hub is not None:
                hub._hub_dir = previous_hub
            if previous_home is None:
                os.environ.pop("TORCH_HOME", None)
            else:
                os.environ["TORCH_HOME"] = previous_home
            _offline.pop()


def _internet_only(connect):
    """``socket.connect`` refusing Internet (IPv4, IPv6) addresses; local sockets still connect."""
    refuse = _refuse(lambda self, address: f"connection to {address}")

    def guarded(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            refuse(self, address)
        return connect(self, address)

    return guarded


@contextlib.contextmanager
def recording(override: Path | None = None) -> Iterator[WeightsRecord]:
    """Collect the weights files resolved inside the block (a model's ``build``, run offline:
    ``no_network``); ``override`` replaces the default file."""
    record = WeightsRecord(override=Path(override) if override else None)
    token = _active.set(record)
    try:
        with no_network():
            yield record
    finally:
        _active.reset(token)


def resolve(filename: str) -> Path:
    """The local path of weights file ``filename``, recorded with its sha256.

    Raises a one-line ``UserError`` saying where to put the file when it is absent.
    """
    record = _active.get()
    path = record.override if record and record.override else hub_checkpoint_dir() / filename
    if not path.is_file():
        raise UserError(
            f"pretrained weights {filename} not found at {path}: put the file there "
            f"(torchvision's published file of that name), pass --pretrained PATH, "
            f"or train from scratch with --pretrained none"
        )
    if record is not None:
        digest = sha256_of(path)
        record.files.append({"file": str(path), "expected_name": filename, "sha256": digest,
                             "matches_published": matches_published(filename, digest)})
    return path


def matches_published(filename: str, digest: str) -> bool:
    """Whether ``digest`` is the file torchvision published as ``filename``.

    torchvision names each weights file ``<arch>-<first 8 hex digits of its sha256>.pth``,
    so the name itself says which bytes are the published ones.
    """
    stem = Path(filename).stem
    published = stem.rsplit("-", 1)[-1] if "-" in stem else ""
    return len(published) >= 8 and all(c in "0123456789abcdef" for c in published) and digest.startswith(published)


def load_state_dict(filename: str) -> dict:
    """``torch.load`` of the resolved file (tensors only, on the CPU)."""
    import torch

    path = resolve(filename)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise UserError(f"{path}: not a readable PyTorch weights file ({type(error).__name__}: {error})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return state


def init_used(pretrained) -> str:
    """What a model started from, from the weights it loaded (a ``results.Pretrained``):
    ``none``; ``imagenet`` when every file is the one published under its name (each file's
    sha256 checked against the digits of its name here, not taken from the record); else ``file``."""
    if pretrained.mode == "none":
        return "none"
    published = pretrained.files and all(matches_published(f.expected_name, f.sha256) for f in pretrained.files)
    return "imagenet" if published else "file"
