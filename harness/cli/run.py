"""``bench run``: train one model under a protocol, score the test split, write a run folder."""

from __future__ import annotations

from pathlib import Path

import click
from click.core import ParameterSource

from harness.cli.options import plugin_option
from harness.errors import UserError


@click.command()
@click.option("--dataset", default="shapes", show_default=True, help="Dataset name (`bench plugins` lists them).")
@click.option("--data-root", type=click.Path(path_type=str), help="Folder holding the dataset in its official layout.")
@click.option("--model", help="Model name, or timm:<name>. Default: the protocol's.")
@click.option("--aug", "augmentation", help="Augmentation: flip (M1), crop (M2), mixup (M3). Default: the protocol's.")
@click.option("--size", type=click.IntRange(min=8), help="Square input size. Default: the protocol's.")
@click.option("--protocol", default="smoke", show_default=True, help="Training protocol (`bench protocol list`).")
@click.option("--epochs", type=click.IntRange(min=1), help="Override the protocol's epochs (recorded as a deviation).")
@click.option("--batch-size", type=click.IntRange(min=1), help="Override the protocol's global batch (recorded as a deviation).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
              help="auto: bf16 autocast on a GPU, fp32 on a CPU. fp32 on a GPU turns TF32 off.")
@click.option("--pretrained", help="imagenet, none, or a weights file. Default: the protocol's init.")
@click.option("--out", default="runs", show_default=True, type=click.Path(path_type=str), help="Folder for run folders.")
@click.option("--run-id", help="Name of the run folder. Default: dataset-model-aug-size-protocol-seedN.")
@click.option("--resume", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Continue the unfinished run in this folder from its last checkpoint.")
@click.option("--overwrite", is_flag=True, help="Replace a finished or unfinished run of the same id.")
@click.option("--skip-missing", is_flag=True, help="Leave out images whose files are missing (the coverage is recorded).")
@click.option("--no-cache", is_flag=True, help="Decode images into memory instead of the on-disk uint8 cache.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@plugin_option
def run(resume: Path | None, no_cache: bool, quiet: bool, plugins: tuple[str, ...], **options) -> None:
    """Train a model, score the test split and print the paper's metric columns.

    With no options: the embedded `shapes` dataset under the `smoke` protocol, on the GPU
    when there is one. The run folder holds result.json, scores.npz, log.json and model.pt.
    """
    from harness import metrics, results
    from harness.runner import RunConfig, resume_config
    from harness.runner import run as run_training

    if resume is not None:
        context = click.get_current_context()
        given = [name for name in [*options, "no_cache"] if name != "data_root"
                 and context.get_parameter_source(name) is not ParameterSource.DEFAULT]
        if given:
            names = ", ".join("--" + name.replace("_", "-") for name in given)
            raise UserError(f"--resume continues a run with its stored settings; drop {names}")
        config = resume_config(resume, data_root=options["data_root"], plugins=plugins)
        config.progress = not quiet
    else:
        config = RunConfig(**options, plugins=plugins, cache=not no_cache, progress=not quiet)
    run_dir = run_training(config, resume=resume is not None)
    if not results.is_finished(run_dir):
        return  # a non-zero rank under torchrun
    record = results.read_result(run_dir)
    label = f"{record['model']['name']} {record['augmentation']['name']} {record['size']}px"
    click.echo(metrics.format_table([(label, record["metrics"])]))
    deviations = record["protocol"]["deviations"]
    if deviations:
        changed = ", ".join(f"{k}={v['used']}" for k, v in deviations.items())
        click.echo(f"protocol {record['protocol']['name']} with deviations: {changed}")
    click.echo(f"run folder: {run_dir}  ({record['wall_time_s']:.0f} s, {record['train_images_per_s']:.0f} train img/s)")


COMMANDS = [run]
