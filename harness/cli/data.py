"""``bench data verify|where|fetch``: check a dataset against the official facts, say where it comes from, fetch it."""

from __future__ import annotations

import json
from pathlib import Path

import click
from tabulate import tabulate

from harness.cli.options import load_registry, plugin_option
from harness.errors import UserError
from harness.image_files import MAX_IMAGE_BYTES

SHOWN_PROBLEMS = 20


@click.group()
def data() -> None:
    """Get datasets and check them on disk before benchmarking on them."""


def _print_summary(report: dict, root: str | None) -> None:
    official = report["canonical"] or {}
    fingerprint = report["fingerprint"]
    if report["canonical_fingerprint"]:
        same = fingerprint == report["canonical_fingerprint"]
        fingerprint += " (the official one)" if same else f" (official: {report['canonical_fingerprint']})"
    click.echo(f"dataset      {report['dataset']} (version {report['version']})")
    if root:
        click.echo(f"root         {root}")
    click.echo(f"fingerprint  {fingerprint}")
    click.echo(f"coverage     {report['coverage']:.2%}\n")
    splits = report["splits"]
    rows = [
        (name, s["n"], s["listed"], official.get(name, ""), s["positives"], s["ignored"])
        for name, s in splits.items()
    ]
    click.echo(tabulate(rows, headers=["split", "images", "listed", "official", "positives", "ignored"]))
    click.echo()
    headers = ["class"] + [f"{name} {kind}" for name in splits for kind in ("positives", "ignored")]
    rows = [
        [class_name]
        + [s[f"per_class_{kind}"][class_name] for s in splits.values() for kind in ("positives", "ignored")]
        for class_name in report["classes"]
    ]
    click.echo(tabulate(rows, headers=headers))
    problems, warnings = report["problems"], report["warnings"]
    if problems:
        click.echo(f"\n{len(problems)} problem(s):")
        _print_entries(problems)
    else:
        click.echo("\nOK: every image decodes and no problem was found.")
    if warnings:
        click.echo(f"\n{len(warnings)} warning(s), which do not stop a run:")
        _print_entries(warnings)


def _print_entries(entries: list[dict]) -> None:
    """The first ``SHOWN_PROBLEMS`` problems or warnings, one line each: split, id, what, file."""
    for entry in entries[:SHOWN_PROBLEMS]:
        where = " ".join(str(entry[key]) for key in ("split", "id") if entry.get(key) is not None)
        file = f" ({entry['file']})" if entry.get("file") else ""
        click.echo(f"  {where + ': ' if where else ''}{entry['problem']}{file}")
    if len(entries) > SHOWN_PROBLEMS:
        click.echo(f"  ... and {len(entries) - SHOWN_PROBLEMS} more; --json lists them all")


@data.command("verify")
@click.option("--dataset", "dataset_name", required=True, help="Dataset name (see `bench plugins`).")
@click.option(
    "--data-root",
    type=click.Path(path_type=Path),
    help="Folder holding the dataset's official layout (or the manifest file for `manifest`).",
)
@click.option("--skip-missing", is_flag=True, help="Leave out images not found, as `bench run --skip-missing` does.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole report as one JSON object.")
@click.option("--workers", type=click.IntRange(min=1), help="Threads decoding images (default: one per core).")
@click.option("--max-image-bytes", type=click.IntRange(min=1), default=MAX_IMAGE_BYTES, show_default=True,
              help="The largest image file read; a larger one is a problem (so are FIFOs and devices).")
@plugin_option
@click.pass_context
def verify_command(
    ctx: click.Context,
    dataset_name: str,
    data_root: Path | None,
    skip_missing: bool,
    as_json: bool,
    workers: int | None,
    max_image_bytes: int,
    plugins: tuple[str, ...],
) -> None:
    """Load a dataset, decode every image, and report counts, fingerprint, problems and warnings.

    Exits with status 1 when there is any problem: missing or undecodable images, files that
    are not regular files (FIFOs, devices) or exceed --max-image-bytes, images of more than
    100 megapixels, file names
    that lead outside the data, ids or files shared between splits, or sizes and counts that
    differ from the official data. Warnings (a manifest's images outside its folder) are
    listed but do not change the exit status.
    """
    from harness.progress import to_stderr
    from harness.verify import verify

    to_stderr(quiet=as_json)
    component = load_registry(plugins).get("dataset", dataset_name)
    if data_root is not None and not component.spec.takes_data_root:
        raise UserError(f"dataset {dataset_name!r} takes no --data-root (it is generated); drop --data-root")
    dataset = component.call("load", component.spec.load, data_root.expanduser() if data_root else None,
                             {"skip_missing": skip_missing})
    report = verify(dataset, component.spec, workers=workers, max_image_bytes=max_image_bytes)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        _print_summary(report, dataset.info.get("root"))
    if report["problems"]:
        ctx.exit(1)


@data.command("where")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the source as one JSON object.")
def where_command(name: str, as_json: bool) -> None:
    """Where dataset NAME comes from: official archives (URL, size, sha256, md5), the layout
    --data-root holds after extraction, and the commands that fetch and verify it."""
    from harness.dataset_archives import describe

    found = describe(name)
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    click.echo(f"dataset   {name}\nhomepage  {found['homepage']}\n")
    if found["archives"]:
        rows = [(a["file"], a["url"], a["size"] or "not recorded", a["sha256"] or "not recorded", a["md5"] or "not recorded")
                for a in found["archives"]]
        click.echo(tabulate(rows, headers=["archive", "url", "bytes", "sha256", "md5"]) + "\n")
    else:
        click.echo(f"archives  {found['note']}\n")
    click.echo("--data-root DIR holds, after extraction:")
    for entry in found["layout"]:
        click.echo(f"  DIR/{entry}")
    click.echo()
    if found["archives"]:
        click.echo(f"bench data fetch {name} --data-root DIR     # download (resumable), check, extract")
    click.echo(f"bench data verify --dataset {name} --data-root DIR")


@data.command("fetch")
@click.argument("name")
@click.option("--data-root", type=click.Path(path_type=Path), required=True,
              help="Folder to extract into (the --data-root of later commands).")
def fetch_command(name: str, data_root: Path) -> None:
    """Download dataset NAME's official archives into --data-root, check their sha256, extract.

    For voc2007 and coco2014 (`bench data where NAME` lists the archives). An interrupted
    download resumes when the command runs again; an archive whose checksum differs is deleted
    and refused, one with links or members outside the official layout is refused before
    anything is extracted. $BENCH_DATA_MIRROR (a base URL) replaces the official host.
    """
    from harness.dataset_archives import fetch

    root = fetch(name, data_root, report=lambda line: click.echo(line, err=True))
    click.echo(f"{name} is in {root}; check it with `bench data verify --dataset {name} --data-root {root}`")


COMMANDS = [data]
