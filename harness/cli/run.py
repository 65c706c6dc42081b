"""``bench run``: train one model under a protocol, score the test split, write a run folder.

Its run options are built from the fields of ``harness.config.RunConfig``, where each setting
is declared once (flag, help, default); ``--config`` reads the same names from a TOML file
and ``--from`` starts from a run folder's resolved settings. Options given on the command
line override both.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import click
from click.core import ParameterSource

from harness.config import RunConfig, option_flag
from harness.errors import UserError


def run_options(command):
    """One click option per ``RunConfig`` field, read from the field's declaration
    (``harness.config.setting``): flag, help, default, type and choices are written only there."""
    types = typing.get_type_hints(RunConfig)
    for spec in reversed(dataclasses.fields(RunConfig)):
        kind = types[spec.name]
        meta = spec.metadata
        flag = option_flag(spec)
        kwargs: dict = {"help": meta["help"]}
        if kind is bool:
            kwargs.update(is_flag=True, default=spec.default, show_default="/" in flag)
        elif typing.get_origin(kind) is tuple:
            kwargs.update(multiple=True, metavar=meta["metavar"])
        else:
            base = next(a for a in (typing.get_args(kind) or (kind,)) if a is not type(None))
            kwargs["type"] = (click.Choice(meta["choices"]) if meta["choices"]
                              else click.Path(path_type=str) if meta["path"] else base)
            if spec.default is not None:
                kwargs.update(default=spec.default, show_default=True)
        command = click.option(flag, spec.name, **kwargs)(command)
    return command


@click.command()
@run_options
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Settings from a TOML file (bench run's option names as keys, at the top or in [run]); "
                   "options given here override it.")
@click.option("--from", "from_run", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Run again with the settings a run folder resolved to (its run.json); options given here "
                   "change them, and the run id is derived anew.")
@click.option("--resume", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Continue the unfinished run in this folder from its last checkpoint, with its stored settings; "
                   "name its file, folder and module plugins again with --plugin (sha256 checked).")
@click.option("--quiet", is_flag=True, help="No progress bars and no per-epoch lines.")
@click.option("--json", "as_json", is_flag=True, help="Print the result record (result.json) instead of a table.")
def run(config_file: Path | None, from_run: Path | None, resume: Path | None, quiet: bool, as_json: bool,
        **options) -> None:
    """Train a model, score the test split and print the paper's metric columns.

    With no options: the embedded `shapes` dataset under the `smoke` protocol, on the GPU
    when there is one. The run folder holds result.json, scores.npz, log.json, run.json
    and model.pt. Progress goes to stderr: bars on a terminal, one line per epoch otherwise.
    """
    from harness import metrics
    from harness.progress import to_stderr
    from harness.runner import run as run_training

    to_stderr(quiet or as_json)
    context = click.get_current_context()
    given = {p.name: p for p in context.command.params if p.name in options
             and context.get_parameter_source(p.name) is not ParameterSource.DEFAULT}
    if resume is not None:
        extra = [p.opts[0] for name, p in given.items() if name not in ("data_root", "plugins")]
        extra += [flag for flag, value in (("--config", config_file), ("--from", from_run)) if value]
        if extra:
            raise UserError(f"--resume continues a run with its stored settings; drop {', '.join(extra)}")
        record = run_training(resume=resume, data_root=options["data_root"], plugins=options["plugins"])
    else:
        record = run_training(settings(options, given, config_file, from_run))
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


def settings(options: dict, given: dict, config_file: Path | None, from_run: Path | None) -> RunConfig:
    """The run's ``RunConfig``: a run folder's settings (``--from``), then a file's (``--config``),
    then the options given on the command line, each overriding the one before."""
    base = RunConfig.from_run(from_run, options["plugins"]) if from_run else RunConfig()
    if config_file:
        stated = RunConfig.from_file(config_file)
        base = dataclasses.replace(base, **{f.name: getattr(stated, f.name) for f in dataclasses.fields(RunConfig)
                                            if getattr(stated, f.name) != f.default})
    return dataclasses.replace(base, **{name: options[name] for name in given})


COMMANDS = [run]
