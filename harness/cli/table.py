"""``bench table``: the runs of many folders as one table, a row per configuration."""

from __future__ import annotations

import click

from harness.errors import UserError


def parse_by(value: str) -> tuple[str, ...]:
    """``model,aug,size`` as a tuple of ``load_runs`` columns, refusing unknown ones."""
    from harness.tables import RUN_COLUMNS

    columns = tuple(part.strip() for part in value.split(",") if part.strip())
    unknown = [column for column in columns if column not in RUN_COLUMNS]
    if unknown or not columns:
        raise UserError(f"--by {value!r}: choose comma-separated columns among {', '.join(RUN_COLUMNS)}")
    return columns


@click.command("table")
@click.argument("runs", nargs=-1, required=True)
@click.option("--by", "by", default="model,aug,size", show_default=True,
              help="Columns that make a configuration; its seeds form one row.")
@click.option("--format", "fmt", type=click.Choice(["md", "csv", "tex", "html", "json"]), default="md",
              show_default=True, help="Output format (json keeps fractions; the others show percent).")
@click.option("--bootstrap", "n_bootstrap", default=200, show_default=True, type=click.IntRange(min=0),
              help="Resamples for the interval of Δ map to the baseline (0: no interval).")
@click.option("--seed", default=0, show_default=True, help="Seed of the bootstrap resampling.")
def table(runs: tuple[str, ...], by: str, fmt: str, n_bootstrap: int, seed: int) -> None:
    """One row per configuration of RUNS (run folders, folders of runs, or globs): the mean ±
    std over its seeds of map and the paper columns, how many runs and which seeds, and Δ map
    to the same-backbone baseline (the model named as the backbone, otherwise alike) with the
    95% interval of `bench compare` over both groups' seeds, when the baseline's runs are given.
    """
    from harness.tables import load_runs, render, summarize

    columns = parse_by(by)
    click.echo(render(summarize(load_runs(runs), columns, n_bootstrap=n_bootstrap, seed=seed), columns, fmt), nl=False)


COMMANDS = [table]
