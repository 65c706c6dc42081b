"""Pretrained weights from local files, with their published URL and hash: never a silent fallback.

A model's ``build(num_classes, pretrained=True)`` asks for its weights by the name they are
published under: torchvision's file name (``resnet101-63fe2227.pth``) or weights enum
(``ResNet101_Weights.IMAGENET1K_V1``) through ``resolve``, or a file of a Hugging Face hub
repository (timm's ``timm/resnet50.a1_in1k``, ``model.safetensors``) through ``resolve_hub``.
The file is taken from ``--pretrained PATH`` when the user gave one, else from where torch
and the hub client keep it (``$TORCH_HOME/hub/checkpoints/``, the hub cache), the folders
``bench weights fetch`` downloads into. Every file used is recorded with its sha256, and the
run stores the record. ``listing()`` collects the files a build asks for without needing them.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import re
import socket
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from harness.errors import UserError
from harness.naming import sha256_of

HUB_DIGEST = "#sha256="
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass
class WeightsRecord:
    """The weights files a model build loaded (filled in by ``resolve``)."""

    override: Path | None = None
    files: list[dict] = field(default_factory=list)
    model: str | None = None


@dataclass(frozen=True)
class PublishedFile:
    """A file a pretrained build needs, as its publisher names it.

    ``name`` is what a run records as ``expected_name``: torchvision's file name (its last
    8 hex digits start its sha256), or ``hf-hub:REPO/FILE`` followed by ``#sha256=`` and the
    hub's digest of the file when the hub cache knows it. ``sha256`` is the whole published
    digest where it is known, ``sha256_prefix`` what the name alone says. ``path`` is where
    torch or the hub client keep the file; ``repo_id``/``filename`` are set for hub files.
    ``weights`` is False for a file that is not weights (a hub model's ``config.json``).
    """

    name: str
    url: str | None
    path: Path
    sha256: str | None = None
    sha256_prefix: str | None = None
    repo_id: str | None = None
    filename: str | None = None
    weights: bool = True


class MissingWeights(UserError):
    """A file a pretrained build needs is not on disk; ``file`` says which and where from."""

    def __init__(self, message: str, file: PublishedFile):
        super().__init__(message)
        self.file = file


_active: contextvars.ContextVar[WeightsRecord | None] = contextvars.ContextVar("weights", default=None)
_listed: contextvars.ContextVar[list[PublishedFile] | None] = contextvars.ContextVar("listed", default=None)


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


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment at call time as the hub client
    does at import: ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "huggingface"
    return Path(home).expanduser() / "hub"


def hf_endpoint() -> str:
    """``$HF_ENDPOINT`` or ``https://huggingface.co``: where hub files are downloaded from."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


@contextlib.contextmanager
def recording(override: Path | None = None, model: str | None = None) -> Iterator[WeightsRecord]:
    """Collect the weights files resolved inside the block (a model's ``build``, run offline:
    ``no_network``); ``override`` replaces the default file; ``model`` is named in the fetch
    command a missing file's error gives."""
    record = WeightsRecord(override=Path(override) if override else None, model=model)
    token = _active.set(record)
    try:
        with no_network():
            yield record
    finally:
        _active.reset(token)


@contextlib.contextmanager
def listing() -> Iterator[list[PublishedFile]]:
    """Inside the block ``resolve`` and ``resolve_hub`` list each file asked for and return
    its path even when it is absent (a build then stops at its first read of a missing file)."""
    found: list[PublishedFile] = []
    token = _listed.set(found)
    try:
        yield found
    finally:
        _listed.reset(token)


def torch_file(weights: Any, url: str | None = None) -> PublishedFile:
    """A file torch keeps in its hub cache: ``weights`` is its published file name (with the
    ``url`` it is downloaded from; torchvision's own files need none) or a torchvision weights enum."""
    if hasattr(weights, "url") and hasattr(weights, "meta"):
        url = weights.url
        weights = url.rsplit("/", 1)[-1]
    name = str(weights)
    if not name or Path(name).name != name:
        raise UserError(f"weights file name {name!r} must be a plain file name such as resnet101-63fe2227.pth")
    stem = Path(name).stem
    digits = stem.rsplit("-", 1)[-1] if "-" in stem else ""
    prefix = digits if len(digits) >= 8 and all(c in "0123456789abcdef" for c in digits) else None
    url = url or torchvision_urls().get(name)
    return PublishedFile(name=name, url=url, path=hub_checkpoint_dir() / name, sha256_prefix=prefix)


@functools.cache
def torchvision_urls() -> dict[str, str]:
    """File name → URL of every weights file torchvision publishes (its weights enums), so a
    plugin that names torchvision's file gets its URL without stating it."""
    import torchvision.models as tvm

    urls = {}
    for model in tvm.list_models():
        for weights in tvm.get_model_weights(model):
            urls[weights.url.rsplit("/", 1)[-1]] = weights.url
    return urls


def hub_file(repo_id: str, filename: str = "model.safetensors", *, weights: bool = True) -> PublishedFile:
    """A file of Hugging Face hub repository ``repo_id`` (revision ``main``), where the hub
    client caches it; its sha256 is the name of its blob in the cache (the hub's digest of an
    LFS file), known once the file has been downloaded."""
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id) or ".." in repo_id:
        raise UserError(f"hub repository {repo_id!r} must look like OWNER/NAME, e.g. timm/resnet50.a1_in1k")
    snapshot = None
    folder = hf_cache_dir() / f"models--{repo_id.replace('/', '--')}"
    ref = folder / "refs" / "main"
    if ref.is_file():
        snapshot = folder / "snapshots" / ref.read_text().strip() / filename
    path = snapshot if snapshot is not None else folder / "snapshots" / "main" / filename
    blob = path.resolve().name if path.is_symlink() else ""
    sha256 = blob if _HEX64.fullmatch(blob) else None
    name = f"hf-hub:{repo_id}/{filename}" + (f"{HUB_DIGEST}{sha256}" if sha256 and weights else "")
    return PublishedFile(name=name, url=f"{hf_endpoint()}/{repo_id}/resolve/main/{filename}", path=path,
                         sha256=sha256, repo_id=repo_id, filename=filename, weights=weights)


def _use(file: PublishedFile) -> Path:
    """The local path of ``file``: listed in ``listing()``, else found or one line saying how to get it."""
    listed = _listed.get()
    record = _active.get()
    if listed is not None:
        listed.append(file)
        return file.path
    path = record.override if record and record.override and file.weights else file.path
    if not path.is_file():
        model = record.model if record and record.model else "MODEL"
        source = f" downloads {file.url}" if file.url else " needs a URL from the model's plugin"
        raise MissingWeights(
            f"weights {file.name.split(HUB_DIGEST)[0]} not found at {path}: `bench weights fetch {model}`{source}; "
            f"or use --pretrained PATH or --pretrained none", file)
    if record is not None and file.weights:
        digest = sha256_of(path)
        record.files.append({"file": str(path), "expected_name": file.name, "sha256": digest,
                             "matches_published": matches_published(file.name, digest)})
    return path


def resolve(weights: Any, *, url: str | None = None) -> Path:
    """The local path of weights file ``weights`` (a published file name or a torchvision
    weights enum), recorded with its sha256. Raises a one-line ``MissingWeights`` naming the
    URL and the ``bench weights fetch`` command when it is absent."""
    return _use(torch_file(weights, url))


def resolve_hub(repo_id: str, filename: str = "model.safetensors", *, weights: bool = True) -> Path:
    """The local path of ``filename`` of hub repository ``repo_id``, from the hub cache
    (``weights=False`` for a file that is not weights: not recorded, never replaced by
    ``--pretrained PATH``)."""
    return _use(hub_file(repo_id, filename, weights=weights))


def matches_published(filename: str, digest: str) -> bool:
    """Whether ``digest`` is the file published as ``filename``.

    torchvision names each weights file ``<arch>-<first 8 hex digits of its sha256>.pth``,
    so the name itself says which bytes are the published ones; a hub file's recorded name
    ends in ``#sha256=`` and the hub's whole digest of the file.
    """
    if HUB_DIGEST in filename:
        return digest == filename.rsplit(HUB_DIGEST, 1)[1]
    stem = Path(filename).stem
    published = stem.rsplit("-", 1)[-1] if "-" in stem else ""
    return len(published) >= 8 and all(c in "0123456789abcdef" for c in published) and digest.startswith(published)


def read_state_dict(path: Path) -> dict:
    """The tensors of a weights file: safetensors by its suffix, else ``torch.load`` with
    ``weights_only`` (never unpickling code), unwrapping a ``state_dict`` entry."""
    import torch

    try:
        if path.suffix == ".safetensors":
            import safetensors.torch

            return safetensors.torch.load_file(str(path), device="cpu")
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise UserError(f"{path}: not a readable weights file ({type(error).__name__}: {error})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return state


def load_state_dict(weights: Any, *, url: str | None = None) -> dict:
    """The tensors of the resolved file (``resolve``'s arguments), on the CPU."""
    return read_state_dict(resolve(weights, url=url))


def init_used(pretrained) -> str:
    """What a model started from, from the weights it loaded (a ``results.Pretrained``):
    ``none``; ``imagenet`` when every file is the one published under its name (each file's
    sha256 checked against the digits of its name here, not taken from the record); else ``file``."""
    if pretrained.mode == "none":
        return "none"
    published = pretrained.files and all(matches_published(f.expected_name, f.sha256) for f in pretrained.files)
    return "imagenet" if published else "file"
