"""``bench plugins``: every plugin, where it came from, and what it registered."""

from __future__ import annotations

import dataclasses
import json

import click
from tabulate import tabulate

from harness.cli.options import load_registry, plugin_option


@click.command("plugins")
@plugin_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON list.")
@click.pass_context
def plugins_command(ctx: click.Context, plugins: tuple[str, ...], as_json: bool) -> None:
    """List plugins with their components (kind, name, version; with --json, the description
    a component's spec gives), source and status."""
    registry = load_registry(plugins)
    verbose = ctx.obj.get("verbose")
    records = []
    for plugin in registry.plugins:
        record = {k: v for k, v in dataclasses.asdict(plugin.provenance()).items() if v is not None}
        record["status"] = plugin.status
        if plugin.error:
            record["error"] = plugin.error
            if verbose:
                record["traceback"] = plugin.error_traceback
        record["components"] = [
            {"kind": c.kind, "name": c.name, "version": c.spec.version,
             **({"description": str(c.spec.description)} if c.spec.description else {})} for c in plugin.components
        ]
        records.append(record)
    if as_json:
        click.echo(json.dumps(records, indent=2))
        return
    rows = []
    for record in records:
        source = record["source"]
        if record.get("distribution") and source != "built-in":
            source = f"{record['distribution']} {record['distribution_version']}"
        elif record.get("path"):
            source = f"{source} {record['path']}"
        components = ", ".join(f"{c['kind']}:{c['name']}" for c in record["components"])
        status = record["status"] if "error" not in record else f"failed: {record['error']}"
        rows.append((record["name"], source, status, components))
    click.echo(tabulate(rows, headers=["plugin", "source", "status", "components"]))
    if verbose:
        for record in records:
            if record.get("traceback"):
                click.echo(f"\n{record['name']}:\n{record['traceback']}", err=True)


COMMANDS = [plugins_command]
