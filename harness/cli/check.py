"""``bench check``: run the conformance suite on the components of one or more plugins."""

from __future__ import annotations

import json
from pathlib import Path

import click

from harness.cli.options import load_registry, plugin_option
from harness.errors import UserError

MARKS = {"pass": "✓", "fail": "✗", "warn": "!", "skip": "-"}


@click.command("check")
@plugin_option
@click.option(
    "--component",
    "names",
    multiple=True,
    metavar="NAME",
    help="Check only this component (NAME:VARIANT for one that takes a variant). Repeatable.",
)
@click.option(
    "--data-root",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    help="Data folder passed to every dataset checked (pick one with --component); "
    "without it, datasets that need one are skipped.",
)
@click.option("--loss", "loss", metavar="NAME",
              help="Check loss NAME too, and check the models' gradients against it (default: bce).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as one JSON list.")
def check_command(plugins: tuple[str, ...], names: tuple[str, ...], data_root: Path | None, loss: str | None,
                  as_json: bool) -> None:
    """Check that every component the --plugin plugins register keeps its contract.

    Runs on the CPU in seconds with tiny inputs: models (shapes for 7 and 13 classes at two
    sizes, batch of 1, train and eval mode, finite logits not probabilities, head_prefixes
    and the parameters at the head rate, gradients that agree with the loss, seeding),
    datasets (label encoding, ids, splits, stable fingerprint), augmentations (shapes, target
    range, determinism), losses (finite scalar, a gradient that is the derivative of the value,
    a mean not a sum) and fusions (shape, order invariance, rankings). Without --plugin, every
    loaded plugin is checked, and the --loss loss too. Exits 1 when any check fails;
    warnings do not fail.
    """
    from harness.check import run_checks, select

    registry = load_registry(plugins)
    selected = select(registry, plugins, names)
    if loss is not None and not any(c.kind == "loss" and c.name == loss for c, _ in selected):
        selected.append((registry.get("loss", loss), loss))
    results = []
    for (component, _), component_results in zip(selected, run_checks(registry, selected, data_root, loss or "bce")):
        results += component_results
        if not as_json:
            first = component_results[0]
            about = f": {component.spec.description}" if component.spec.description else ""
            click.echo(f"{first.kind} {first.component} (plugin {first.plugin}){about}")
            for result in component_results:
                detail = f": {result.detail}" if result.detail else ""
                click.echo(f"  {MARKS[result.status]} {result.check}{detail}")
    failed = [r for r in results if r.status == "fail"]
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        counts = {status: sum(r.status == status for r in results) for status in MARKS}
        warned = f", {counts['warn']} warning(s)" if counts["warn"] else ""
        click.echo(f"{counts['pass']} passed, {counts['fail']} failed{warned}, {counts['skip']} skipped")
    if failed:
        where = "; ".join(f"{r.kind} {r.component}: {r.check}" for r in failed)
        raise UserError(f"{len(failed)} check(s) failed ({where})")


COMMANDS = [check_command]
