"""``bench leaderboard``: submit validated runs and build the tables from them."""

from __future__ import annotations

from pathlib import Path

import click

from harness.cli.options import plugin_option
from harness.errors import UserError

_ROOT = click.option(
    "--leaderboards", "root", default="leaderboards", show_default=True, type=click.Path(path_type=Path),
    help="The leaderboards folder (submissions/ and tables/).",
)


@click.group()
def leaderboard() -> None:
    """Submit run folders to the leaderboards and build their tables."""


@leaderboard.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@_ROOT
@plugin_option
def submit(run_dir: Path, root: Path, plugins: tuple[str, ...]) -> None:
    """Validate RUN_DIR (schema, metrics re-scored from its scores, protocol hash, data
    fingerprint) and store it; refusals are one line saying why."""
    from harness.leaderboard import registry_canonical
    from harness.leaderboard import submit as submit_run

    stored = submit_run(run_dir, root, registry_canonical(plugins))
    click.echo(f"accepted: {stored}")


@leaderboard.command()
@_ROOT
@click.option("--format", "formats", default="md,csv,tex,html", show_default=True,
              help="Comma-separated output formats: md, csv, tex, html.")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 listing the files a build would change.")
def build(root: Path, formats: str, check: bool) -> None:
    """Write one table per dataset and protocol to tables/, and README.md (deterministic)."""
    from harness.leaderboard import build_outputs, stale_files, write_outputs

    chosen = tuple(f.strip() for f in formats.split(",") if f.strip())
    outputs = build_outputs(root, chosen)
    if check:
        stale = stale_files(root, outputs, chosen)
        for entry in stale:
            click.echo(f"stale: {root / entry}")
        if stale:
            raise UserError(f"{len(stale)} leaderboard file(s) are stale; run `bench leaderboard build` and commit them")
        click.echo(f"{len(outputs)} leaderboard files are up to date")
        return
    changed = write_outputs(root, outputs, chosen)
    click.echo(f"wrote {len(outputs)} files to {root} ({len(changed)} changed)")


COMMANDS = [leaderboard]
