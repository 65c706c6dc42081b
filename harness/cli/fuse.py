"""``bench fuse``: score-level fusion of finished runs into a new run folder."""

from __future__ import annotations

from pathlib import Path

import click

from harness.cli.options import load_registry, plugin_option


@click.command("fuse")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Folder that receives the fused run folder.")
@click.option("--method", default="mean", show_default=True, help="Fusion component (`bench plugins` lists them).")
@click.option("--name", default=None, help="Ensemble label shown on leaderboards, e.g. ScaleEn or DistrEn.")
@click.option("--run-id", default=None, help="Name of the fused run folder (default: derived from the members).")
@click.option("--overwrite", is_flag=True, help="Replace a finished fused run of the same id.")
@click.option("--json", "as_json", is_flag=True, help="Print the fused run's record (result.json).")
@plugin_option
def fuse(
    run_dirs: tuple[Path, ...],
    out_dir: Path,
    method: str,
    name: str | None,
    run_id: str | None,
    overwrite: bool,
    as_json: bool,
    plugins: tuple[str, ...],
) -> None:
    """Fuse the test scores of RUN_DIRS (aligned by image id) and score the result."""
    from harness.fusion import fuse_runs

    component = load_registry(plugins).get("fusion", method)
    record = fuse_runs(list(run_dirs), out_dir, component, name, run_id=run_id, overwrite=overwrite)
    if as_json:
        click.echo(record.to_json(), nl=False)
        return
    metrics = record.metrics
    click.echo(
        f"{record.path}: mAP {100 * metrics['map']:.1f}, L-F1 {100 * metrics['cf1_top3']:.1f}, "
        f"O-F1 {100 * metrics['of1_top3']:.1f} ({len(run_dirs)} runs, {method})"
    )


COMMANDS = [fuse]
