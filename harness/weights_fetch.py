"""``bench weights``: the files a model's ``--pretrained imagenet`` needs, their state on disk, and fetching them.

The files are found by building the model with ``harness.weights.listing()`` active, so a
plugin's model is covered by the same ``resolve`` calls that load its weights in a run.
Fetching uses the publishers' own clients into their usual caches: torch's
``download_url_to_file`` (the sha256 must start with the digits in the file's name) and
``huggingface_hub.hf_hub_download`` (resumes ``.incomplete`` files; the blob must hash to
the hub's digest). A run never downloads: it reads what was fetched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from harness.errors import UserError, one_line
from harness.naming import sha256_of
from harness.weights import HUB_DIGEST, PublishedFile, hf_cache_dir, hf_endpoint, hub_file, listing, torch_file

FETCH_ROUNDS = 5
LISTING_CLASSES = 2


@dataclass(frozen=True)
class Needed:
    """What ``model`` needs: its ``files``, or ``problem`` (one line) when none can be listed."""

    model: str
    files: tuple[PublishedFile, ...]
    problem: str | None = None


def needed(registry, model: str) -> Needed:
    """The files ``model``'s pretrained build asks for (up to the first one missing, when a
    later one depends on it: ``fetch`` lists again after each download)."""
    from harness.check import synthetic_info

    component = registry.get("model", model)
    kwargs = {"variant": model.split(":", 1)[1]} if component.spec.takes_variant else {}
    if component.accepts(component.spec.build, "dataset"):
        kwargs["dataset"] = synthetic_info(LISTING_CLASSES)
    problem = None
    with listing() as found:
        try:
            component.call("build", component.spec.build, LISTING_CLASSES, True, **kwargs)
        except UserError as error:
            problem = None if found else str(error)
    if not found and problem is None:
        problem = "its build loads no weights through harness.weights"
    unique = tuple({file.path: file for file in found}.values())
    return Needed(model=model, files=unique, problem=problem)


def published_digest(file: PublishedFile) -> str:
    """The sha256 the publisher states: whole, ``starts with`` its name's digits, or unknown."""
    if file.sha256:
        return file.sha256
    if file.sha256_prefix:
        return f"{file.sha256_prefix}…"
    if file.repo_id and file.weights:
        return "the hub's digest, known once fetched"
    return "not published"


def status(file: PublishedFile) -> str:
    """``missing``, ``published`` (the bytes hash to the published digest), ``differs``, or
    ``present`` (a file with no published digest: config files)."""
    if not file.path.is_file():
        return "missing"
    if file.repo_id and not file.weights:
        return "present"
    digest = sha256_of(file.path)
    expected = file.sha256 or file.sha256_prefix
    if not expected:
        return "present"
    return "published" if digest.startswith(expected) else "differs"


def fetch_file(file: PublishedFile) -> PublishedFile:
    """Download ``file`` into its cache with its publisher's client and check its hash;
    returns the file as now found. A download whose hash differs is deleted and refused."""
    if file.repo_id:
        return _fetch_hub(file)
    if not file.url:
        raise UserError(f"{file.name}: its publisher gives no URL; put the file at {file.path}")
    if not file.sha256_prefix:
        raise UserError(f"{file.name}: no published hash to check a download against; put the file at {file.path}")
    import torch.hub

    file.path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(file.url, str(file.path), hash_prefix=file.sha256_prefix, progress=False)
    except RuntimeError as error:
        raise UserError(f"{file.url}: download refused, {one_line(error, 120)}; nothing was kept, try again") from None
    except OSError as error:
        raise UserError(f"{file.url}: download failed ({one_line(error, 120)}); check the network and try again") from None
    return torch_file(file.name, file.url)


def _fetch_hub(file: PublishedFile) -> PublishedFile:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise UserError(f"{file.name}: fetching from the hub needs huggingface_hub; pip install huggingface_hub") from None
    try:
        hf_hub_download(file.repo_id, file.filename, cache_dir=hf_cache_dir(), endpoint=hf_endpoint())
    except Exception as error:
        raise UserError(f"{file.url}: download failed ({one_line(error, 150)}); check the network and try again") from None
    fetched = hub_file(file.repo_id, file.filename, weights=file.weights)
    blob = fetched.path.resolve()
    if fetched.weights and (fetched.sha256 is None or sha256_of(blob) != fetched.sha256):
        blob.unlink(missing_ok=True)
        fetched.path.unlink(missing_ok=True)
        raise UserError(f"{file.url}: the downloaded file does not hash to the hub's digest "
                        f"({fetched.sha256 or 'none given'}); it was deleted, try again")
    return fetched


def fetch(registry, model: str, report: Callable[[str], None] = lambda line: None) -> Needed:
    """Fetch every missing file ``model`` needs, listing again after each round (a hub
    model's weights are known once its config is there); returns what it needs now.
    ``report`` gets a line before each download."""
    for _ in range(FETCH_ROUNDS):
        now = needed(registry, model)
        missing = [file for file in now.files if not file.path.is_file()]
        if now.problem or not missing:
            return now
        for file in missing:
            report(f"{model}: downloading {file.url} into {file.path.parent}")
            fetch_file(file)
    return needed(registry, model)


def display_name(file: PublishedFile) -> str:
    """The file's name without the digest a hub name carries."""
    return file.name.split(HUB_DIGEST)[0]
