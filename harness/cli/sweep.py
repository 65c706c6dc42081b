"""``bench sweep``: run a grid file's cells and ensembles, resumably."""

from __future__ import annotations

from pathlib import Path

import click

from harness.cli.options import plugin_option
from harness.errors import UserError


def _seeds(value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        return [int(s) for s in value.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--seeds {value!r}: give comma-separated integers, e.g. --seeds 0,1,2") from None


@click.command("sweep")
@click.argument("grid_file", type=click.Path(path_type=Path))
@click.option("--out", default="runs", show_default=True, type=click.Path(path_type=Path), help="Folder for the run folders.")
@click.option("--data-root", "data_roots", multiple=True, metavar="[DATASET=]PATH",
              help="Dataset folder for every cell, or DATASET=PATH for one dataset. Repeatable.")
@click.option("--dry-run", is_flag=True, help="Print the commands (or the Slurm scripts) without running anything.")
@click.option("--per-gpu", type=click.IntRange(min=1), help="Run this many cells at once on each visible GPU.")
@click.option("--launcher", type=click.Choice(["local", "slurm", "submitit"]), default="local", show_default=True,
              help="local: run here; slurm: write a job array (one task per cell) and a dependent ensembles job; "
                   "submitit: submit each cell as a requeueable submitit job (Slurm, or local processes), wait, "
                   "then fuse the ensembles here.")
@click.option("--gpus-per-cell", type=click.IntRange(min=1),
              help="Train each cell on this many GPUs under torchrun, inside one Slurm task or submitit job.")
@click.option("--seeds", help="Comma-separated seeds replacing the grid's, e.g. 0,1,2.")
@click.option("--sbatch-option", "sbatch_options", multiple=True, metavar="OPTION",
              help="An #SBATCH line for the Slurm jobs, e.g. --sbatch-option=--gres=gpu:1. Repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print the records of the runs made here as one JSON list "
                                                      "(progress lines go to stderr).")
@plugin_option
def sweep(
    grid_file: Path,
    out: Path,
    data_roots: tuple[str, ...],
    dry_run: bool,
    per_gpu: int | None,
    gpus_per_cell: int | None,
    launcher: str,
    seeds: str | None,
    sbatch_options: tuple[str, ...],
    as_json: bool,
    plugins: tuple[str, ...],
) -> None:
    """Train every cell of GRID_FILE not finished yet in OUT, then build its ensembles.

    One line per cell and ensemble (done, skipped or failed) and a summary; exits 1 when
    any failed. Run it again to retry what failed: finished runs are skipped. Without
    --per-gpu the cells train one after the other in this process.
    """
    import json

    from harness import sweep as sweeps
    from harness.progress import to_stderr

    to_stderr(quiet=False)

    grid = sweeps.load_grid(grid_file, _seeds(seeds))
    grid.plugins = tuple(str(Path(p).resolve()) if Path(p).exists() else p for p in plugins)
    out = out.expanduser().resolve()
    roots = sweeps.parse_data_roots(data_roots, {c.dataset for c in grid.cells})
    if gpus_per_cell and launcher == "local":
        raise UserError("--gpus-per-cell applies to --launcher slurm or submitit; a local sweep shares GPUs with --per-gpu")
    if launcher == "slurm":
        if per_gpu:
            raise UserError("--per-gpu applies to --launcher local; give Slurm its resources with --sbatch-option")
        scripts = sweeps.slurm_scripts(grid, out, roots, sbatch_options, gpus_per_cell)
        if dry_run:
            for name, text in scripts.items():
                click.echo(f"# --- {name}\n{text}")
            return
        folder = sweeps.write_scripts(scripts, out)
        click.echo(f"wrote {len(scripts)} scripts to {folder}; submit with: bash {folder / 'submit.sh'}")
        return
    if dry_run:
        lines = sweeps.dry_run_lines(grid, out, roots)
        for line in lines:
            click.echo(line)
        skipped = sum(line.startswith("skip ") for line in lines)
        click.echo(f"{len(grid.cells)} cells and {len(grid.ensembles)} ensembles: {len(lines) - skipped} to run, {skipped} finished")
        return
    echo = (lambda line: click.echo(line, err=True)) if as_json else click.echo
    if launcher == "submitit":
        import importlib.util

        if per_gpu:
            raise UserError("--per-gpu applies to --launcher local; give submitit GPUs with --gpus-per-cell")
        if importlib.util.find_spec("submitit") is None:
            raise UserError("--launcher submitit: the submitit package is not installed; pip install 'multilabel-bench[submitit]'")
        from harness.submitit_sweep import SubmititSweep

        local = SubmititSweep(grid, out, roots, gpus_per_cell=gpus_per_cell, sbatch_options=sbatch_options, echo=echo)
    else:
        local = sweeps.LocalSweep(grid, out, roots, per_gpu=per_gpu, echo=echo)
    summary = local.run()
    echo(summary.line())
    if as_json:
        click.echo(json.dumps([record.to_dict() for record in local.records], indent=2))
    else:
        _print_table(grid, out)
    if summary.failed:
        raise UserError(f"{summary.failed} failed; logs in {out / sweeps.SWEEP_FOLDER / 'logs'}; run the same command again to retry them")


def _print_table(grid, out: Path) -> None:
    """The finished runs of the grid as ``bench table`` shows them (Δ to the baseline without its
    interval, which needs every run's scores resampled: ``bench table`` gives it)."""
    from harness.tables import load_runs, render, summarize

    folders = [out / unit.run_id for unit in (*grid.cells, *grid.ensembles) if (out / unit.run_id / "result.json").is_file()]
    if not folders:
        return
    by = ("model", "aug", "size")
    try:
        text = render(summarize(load_runs(folders), by, n_bootstrap=0), by, "md")
    except UserError as error:
        click.echo(f"no table of the runs: {error}")
        return
    click.echo("\n" + text + f"Intervals of Δ map: bench table {out} --by {','.join(by)}")


COMMANDS = [sweep]
