"""``bench run``: train one model under a protocol, score the test split, write a run folder.

The options of this command are the one definition of a run's settings: each names a field
of ``harness.config.RunConfig``, and ``bench sweep`` builds its cells from the same
definitions (``config_args`` turns a ``RunConfig`` back into these options).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
from click.core import ParameterSource

from harness.cli.options import plugin_option
from harness.config import RunConfig
from harness.errors import UserError

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(RunConfig)}


@click.command()
@click.option("--dataset", default="shapes", show_default=True, help="Dataset name (`bench plugins` lists them).")
@click.option("--data-root", type=click.Path(path_type=str), help="Folder holding the dataset in its official layout.")
@click.option("--model", help="Model name, or timm:<name>. Default: the protocol's.")
@click.option("--aug", "augmentation", help="Augmentation: flip (M1), crop (M2), mixup (M3). Default: the protocol's.")
@click.option("--loss", help="Training loss (`bench plugins` lists them). Default: the protocol's (bce); "
                             "any other is recorded as a deviation.")
@click.option("--size", type=int, help="Square input size. Default: the protocol's.")
@click.option("--protocol", default="smoke", show_default=True, help="Training protocol (`bench protocol list`).")
@click.option("--epochs", type=int, help="Override the protocol's epochs (recorded as a deviation).")
@click.option("--batch-size", type=int, help="Override the protocol's global batch (recorded as a deviation).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
              help="auto: bf16 autocast on a GPU, fp32 on a CPU. fp32 on a GPU turns TF32 off.")
@click.option("--pretrained", help="imagenet, none, or a weights file. Default: the protocol's init.")
@click.option("--out", default="runs", show_default=True, type=click.Path(path_type=str), help="Folder for run folders.")
@click.option("--run-id", help="Name of the run folder (a plain name). Default: dataset-model-aug-size-protocol-seedN.")
@click.option("--overwrite", is_flag=True, help="Replace a finished or unfinished run of the same id once the new "
                                                "one has finished (your own files in the folder stay).")
@click.option("--skip-missing", is_flag=True, help="Leave out images whose files are missing (the coverage is recorded).")
@click.option("--cache/--no-cache", default=True, show_default=True,
              help="Keep decoded images on disk between runs, or decode into memory for this run only.")
@plugin_option
@click.option("--resume", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Continue the unfinished run in this folder from its last checkpoint, with its stored settings; "
                   "name its file, folder and module plugins again with --plugin (sha256 checked).")
@click.option("--quiet", is_flag=True, help="No progress bars and no per-epoch lines.")
@click.option("--json", "as_json", is_flag=True, help="Print the result record (result.json) instead of a table.")
def run(resume: Path | None, quiet: bool, as_json: bool, **options) -> None:
    """Train a model, score the test split and print the paper's metric columns.

    With no options: the embedded `shapes` dataset under the `smoke` protocol, on the GPU
    when there is one. The run folder holds result.json, scores.npz, log.json, run.json
    and model.pt. Progress goes to stderr: bars on a terminal, one line per epoch otherwise.
    """
    from harness import metrics
    from harness.progress import to_stderr
    from harness.runner import run as run_training

    to_stderr(quiet or as_json)
    if resume is not None:
        context = click.get_current_context()
        given = [p.opts[0] for p in context.command.params if p.name in options and p.name not in ("data_root", "plugins")
                 and context.get_parameter_source(p.name) is not ParameterSource.DEFAULT]
        if given:
            raise UserError(f"--resume continues a run with its stored settings; drop {', '.join(given)}")
        record = run_training(resume=resume, data_root=options["data_root"], plugins=options["plugins"])
    else:
        record = run_training(RunConfig(**options))
    if record is None:
        return  # a non-zero rank under torchrun
    if as_json:
        click.echo(record.to_json(), nl=False)
        return
    label = f"{record.model.name} {record.augmentation.name} {record.size}px"
    click.echo(metrics.format_table([(label, record.metrics)]))
    deviations = record.protocol.deviations
    if deviations:
        changed = ", ".join(f"{k}={v['used']}" for k, v in deviations.items())
        click.echo(f"protocol {record.protocol.name} with deviations: {changed}")
    click.echo(f"run folder: {record.path}  ({record.wall_time_s:.0f} s, {record.train_images_per_s:.0f} train img/s)")


def config_args(config: RunConfig, always: tuple[str, ...] = ()) -> list[str]:
    """The ``bench run`` options that give ``config``, from this command's own option
    definitions: ``RunConfig``'s defaults are left out unless named in ``always``."""
    args: list[str] = []
    for parameter in run.params:
        if parameter.name not in _DEFAULTS or not isinstance(parameter, click.Option):
            continue
        value = getattr(config, parameter.name)
        if value is None or value == () or (value == _DEFAULTS[parameter.name] and parameter.name not in always):
            continue
        if parameter.is_bool_flag:
            args.append(parameter.opts[0] if value else parameter.secondary_opts[0])
        elif parameter.multiple:
            args += [item for v in value for item in (parameter.opts[0], str(v))]
        else:
            args += [parameter.opts[0], str(value)]
    return args


def option_fields() -> set[str]:
    """The ``RunConfig`` fields that ``bench run`` has an option for."""
    return {p.name for p in run.params if p.name in _DEFAULTS}


COMMANDS = [run]
