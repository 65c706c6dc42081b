"""``bench protocol``: show the fixed training protocols."""

from __future__ import annotations

import json

import click
from tabulate import tabulate

from harness.protocol import PROTOCOLS, get_protocol


@click.group()
def protocol() -> None:
    """Show the training protocols (every field is hashed into each result)."""


@protocol.command("list")
def list_protocols() -> None:
    """One line per protocol: name, version, hash, description."""
    rows = [(p.name, p.version, p.hash, p.description) for p in PROTOCOLS.values()]
    click.echo(tabulate(rows, headers=["name", "version", "hash", "description"]))


@protocol.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print every field as one JSON object.")
def show(name: str, as_json: bool) -> None:
    """Print every field of protocol NAME."""
    record = get_protocol(name).to_dict()
    if as_json:
        click.echo(json.dumps(record, indent=2))
        return
    rows = [(key, ", ".join(map(str, v)) if isinstance(v, list) else v) for key, v in record.items()]
    click.echo(tabulate(rows, headers=["field", "value"]))


COMMANDS = [protocol]
