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
    """``$TORCH_HOME/hub/checkpoints`` (torch's default: ``~/.cache/torch``)."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


@contextlib.contextmanager
def recording(override: Path | None = None) -> Iterator[WeightsRecord]:
    """Collect the weights files resolved inside the block; ``override`` replaces the default file."""
    record = WeightsRecord(override=Path(override) if override else None)
    token = _active.set(record)
    try:
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
