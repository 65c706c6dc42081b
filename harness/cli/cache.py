"""``bench cache``: list and clear what the harness keeps under its cache folder."""

from __future__ import annotations

import json
import time

import click
from tabulate import tabulate

from harness import cache
from harness.errors import UserError
from harness.files import human_bytes

DAY_S = 86400


@click.group("cache")
def cache_group() -> None:
    """What the harness keeps under its cache folder ($BENCH_CACHE_DIR, else ~/.cache/multilabel-bench)."""


@cache_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: the folder and every entry.")
def list_command(as_json: bool) -> None:
    """Every cache entry: its kind, what it holds, its size and when it was last used."""
    entries = cache.entries()
    if as_json:
        click.echo(json.dumps({"root": str(cache.cache_root()), "entries": [e.to_dict() for e in entries]}, indent=2))
        return
    click.echo(f"cache folder {cache.cache_root()}")
    if not entries:
        click.echo("empty")
        return
    rows = [(e.label, e.what, human_bytes(e.bytes), time.strftime("%Y-%m-%d %H:%M", time.localtime(e.last_used)))
            for e in entries]
    click.echo(tabulate(rows, headers=["entry", "what", "size", "last used"],
                        colalign=("left", "left", "right", "left")))
    total = sum(e.bytes for e in entries if e.harness)
    click.echo(f"{human_bytes(total)} in {sum(e.harness for e in entries)} entries made by the harness")


@cache_group.command("clear")
@click.option("--older-than", "older_than", type=float, default=None, metavar="DAYS",
              help="Remove only entries not used for this many days.")
def clear_command(older_than: float | None) -> None:
    """Remove the entries the harness made (all, or those unused for --older-than DAYS), one line each.

    Entries being built by another process are kept; anything else under the folder is never touched.
    """
    if older_than is not None and older_than < 0:
        raise UserError(f"--older-than {older_than:g}: give a number of days, 0 or more")
    cutoff = time.time() - older_than * DAY_S if older_than is not None else None
    removed = 0
    for entry in cache.entries():
        if not entry.harness or (cutoff is not None and entry.last_used >= cutoff):
            continue
        label = f"{entry.label} ({human_bytes(entry.bytes)})"
        if cache.remove(entry):
            click.echo(f"removed {label}")
            removed += entry.bytes
        else:
            click.echo(f"kept {label}: another process is building it")
    click.echo(f"{human_bytes(removed)} freed in {cache.cache_root()}")


COMMANDS = [cache_group]
