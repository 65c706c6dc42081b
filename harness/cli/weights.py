"""``bench weights list|check|fetch``: the pretrained files models need, where they are, and getting them."""

from __future__ import annotations

import json

import click
from tabulate import tabulate

from harness.cli.options import load_registry, plugin_option

models_argument = click.argument("models", nargs=-1, metavar="[MODEL]...")


@click.group()
def weights() -> None:
    """Pretrained weights: every file a model's --pretrained imagenet needs, its URL and sha256."""


def _models(registry, models: tuple[str, ...]) -> list[str]:
    """The named models, or every registered model that takes no variant."""
    if models:
        return list(models)
    return sorted({component.name for component in registry.components("model") if not component.spec.takes_variant})


def _rows(results, with_status: bool) -> list[dict]:
    from harness.weights_fetch import display_name, published_digest, status

    rows = []
    for result in results:
        if result.problem:
            rows.append({"model": result.model, "file": None, "problem": result.problem})
        for file in result.files:
            row = {"model": result.model, "file": display_name(file), "url": file.url,
                   "sha256": published_digest(file), "path": str(file.path), "present": file.path.is_file()}
            if with_status:
                row["status"] = status(file)
            rows.append(row)
    return rows


def _print(rows: list[dict], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        if row["file"] is None:
            click.echo(f"{row['model']}: {row['problem']}")
    table = [{key: value for key, value in row.items() if key != "problem"} for row in rows if row["file"]]
    if table:
        click.echo(tabulate(table, headers="keys"))


def _run(models, plugins, as_json, with_status, action) -> list[dict]:
    registry = load_registry(plugins)
    rows = _rows([action(registry, model) for model in _models(registry, models)], with_status)
    _print(rows, as_json)
    return rows


json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object per file.")


@weights.command("list")
@models_argument
@json_option
@plugin_option
def list_command(models: tuple[str, ...], as_json: bool, plugins: tuple[str, ...]) -> None:
    """Every file MODEL's pretrained build needs: URL, published sha256, where it is kept.

    Without MODEL, every registered model; a family is named with its variant
    (timm:resnet50, timm:hf-hub:timm/resnet50.a1_in1k).
    """
    from harness.weights_fetch import needed

    _run(models, plugins, as_json, False, needed)


@weights.command("check")
@models_argument
@json_option
@plugin_option
@click.pass_context
def check_command(ctx: click.Context, models: tuple[str, ...], as_json: bool, plugins: tuple[str, ...]) -> None:
    """Hash every file MODEL needs: published, differs or missing; exits 1 unless all are there and published."""
    from harness.weights_fetch import needed

    rows = _run(models, plugins, as_json, True, needed)
    if any(row["file"] and row["status"] in ("missing", "differs") for row in rows):
        ctx.exit(1)


@weights.command("fetch")
@models_argument
@json_option
@plugin_option
def fetch_command(models: tuple[str, ...], as_json: bool, plugins: tuple[str, ...]) -> None:
    """Download what MODEL needs into torch's and the hub's caches, hash-checked (needs network).

    Runs then read the files offline; a download whose hash differs is deleted and refused.
    """
    from harness.weights_fetch import fetch

    if not models:
        raise click.UsageError("name the models to fetch, e.g. `bench weights fetch resnet101`")
    _run(models, plugins, as_json, True,
         lambda registry, model: fetch(registry, model, report=lambda line: click.echo(line, err=True)))


COMMANDS = [weights]
