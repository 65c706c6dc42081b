"""``bench metrics`` and ``bench compare``: the metrics engine on score files and run folders.

Inputs are either two ``.npy`` arrays (scores N×C, labels N×C) or one run folder / ``scores.npz``
(scores, labels and image ids). Bad input of any kind is a ``BadInput``: one line, exit code 2.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import click
from tabulate import tabulate

from harness.comparison import compare as compare_runs
from harness.comparison import load_scored
from harness.metrics import (
    PAPER_COLUMNS,
    PROBABILITY_WARNING,
    bootstrap,
    evaluate,
    format_table,
    from_probabilities,
    looks_like_probabilities,
)
from harness.results import RESULT_FILE


def _class_names(path: str, count: int) -> list[str]:
    """The class names a run folder's result.json records (beside a scores.npz too), else indices."""
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    result_file = folder / RESULT_FILE
    if result_file.is_file():
        try:
            classes = json.loads(result_file.read_text())["dataset"]["classes"]
        except (ValueError, KeyError, TypeError):
            classes = None
        if isinstance(classes, list) and len(classes) == count:
            return [str(c) for c in classes]
    return [str(c) for c in range(count)]


def _percent(value: float | None, digits: int = 1, sign: bool = False) -> str:
    if value is None:
        return "-"
    return f"{100 * value:{'+' if sign else ''}.{digits}f}"


def _table(rows, headers) -> str:
    """A table of preformatted cells: the first column left-aligned, numbers right-aligned."""
    align = ("left",) + ("right",) * (len(headers) - 1)
    return tabulate(rows, headers=headers, colalign=align, disable_numparse=True)


@click.command("metrics")
@click.argument("inputs", nargs=-1, required=True, metavar="SCORES [LABELS]")
@click.option("--json", "output", flag_value="json", help="Print one JSON object: exactly the metrics (fractions).")
@click.option("--table", "output", flag_value="table", default=True, help="Print tables in percent (the default).")
@click.option("--k", default=3, show_default=True, help="Classes predicted per image for the top-k metrics.")
@click.option("--threshold", default=0.5, show_default=True, help="Probability threshold for the *_thr metrics.")
@click.option("--bootstrap", "n_bootstrap", default=0, type=click.IntRange(min=0), help="Add 95% intervals from N resamples of the images.")
@click.option("--seed", default=0, show_default=True, help="Seed of the bootstrap resampling.")
@click.option("--scores", "score_kind", type=click.Choice(["logits", "probabilities"]), default="logits",
              show_default=True, help="What the scores are; probabilities are converted to logits (clipped to "
                                      "[1e-12, 1 − 1e-12]).")
def metrics(inputs: tuple[str, ...], output: str, k: int, threshold: float, n_bootstrap: int, seed: int,
            score_kind: str) -> None:
    """Every metric of docs/METRICS.md for SCORES.npy LABELS.npy (N×C), or for one run folder
    or scores.npz.

    Labels are 1 (present), 0 (absent) or -1 (ignored); scores are logits unless --scores
    probabilities says otherwise. Scores that all lie in [0, 1] are warned about in one line.
    """
    scores, labels, _ = load_scored(inputs)
    if score_kind == "probabilities":
        scores = from_probabilities(scores, name=f"{inputs[0]} (scores)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # said below in one line, naming the file
        result = evaluate(scores, labels, k=k, threshold=threshold)
    if looks_like_probabilities(scores):
        click.echo(f"Warning: {inputs[0]}: {PROBABILITY_WARNING}; pass --scores probabilities to convert them", err=True)
    intervals = {}
    if n_bootstrap:
        keys = ("map", f"cf1_top{k}", f"of1_top{k}")
        intervals = bootstrap(scores, labels, n_bootstrap, seed, keys, k=k, threshold=threshold)
    if output == "json":
        record = dict(result)
        if intervals:
            record["bootstrap"] = {"n": n_bootstrap, "seed": seed, "intervals": intervals}
        click.echo(json.dumps(record, indent=2))
        return
    click.echo(format_table(result, k=k))
    shown = {key.format(k=k) for key, _ in PAPER_COLUMNS} | {"per_class_ap"}
    others = [
        (key, value if isinstance(value, int) else _percent(value)) for key, value in result.items() if key not in shown
    ]
    click.echo("\n" + _table(others, ["metric", "value (% or count)"]))
    names = _class_names(inputs[0], len(result["per_class_ap"])) if len(inputs) == 1 else None
    per_class = [(names[c] if names else c, _percent(ap)) for c, ap in enumerate(result["per_class_ap"])]
    click.echo("\n" + _table(per_class, ["class", "per_class_ap (%)"]))
    if intervals:
        rows = [(key, _percent(result[key]), _percent(low), _percent(high)) for key, (low, high) in intervals.items()]
        click.echo(
            f"\nbootstrap: {n_bootstrap} resamples of the images, seed {seed}\n"
            + _table(rows, ["metric", "value (%)", "95% low", "95% high"])
        )


class _SidesCommand(click.Command):
    """A command whose arguments after ``--`` are side B, up to the first option: click drops
    the ``--`` itself, so the split is taken before it parses."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            split = args.index("--")
            tail = args[split + 1:]
            end = next((i for i, arg in enumerate(tail) if arg.startswith("-")), len(tail))
            ctx.meta["runs_b"] = tuple(tail[:end])
            args = args[:split] + tail[end:]
        return super().parse_args(ctx, args)


@click.command("compare", cls=_SidesCommand)
@click.argument("runs", nargs=-1, required=True, metavar="RUN_A RUN_B | A1 A2 ... -- B1 B2 ...")
@click.option("--bootstrap", "n_bootstrap", default=1000, show_default=True, type=click.IntRange(min=1), help="Resamples (of the seeds, then of the images).")
@click.option("--seed", default=0, show_default=True, help="Seed of the bootstrap resampling.")
@click.option("--top", default=5, show_default=True, type=click.IntRange(min=0), help="How many classes with the largest AP change to list.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (fractions).")
@click.pass_context
def compare(ctx: click.Context, runs: tuple[str, ...], n_bootstrap: int, seed: int, top: int, as_json: bool) -> None:
    """Compare B with A (run folders or scores.npz files): one run each, or several seeds of
    each configuration, A's before `--` and B's after it.

    Images are matched by id; runs scored on different test sets are refused. For map and each
    paper column: the mean of each side, B − A with a 95% interval from a two-level bootstrap
    (seeds resampled within each side, then test images, paired on images), and P(B > A), the
    share of (A, B) run pairs where B's map is higher. With one run per side the seed variance
    is unknown and no difference is called significant. Every difference in how the runs were
    trained (protocol, epochs, size, augmentation, loss, backbone, data, seed) is listed.
    """
    if "runs_b" in ctx.meta:
        runs_a, runs_b = runs, ctx.meta["runs_b"]
        if not runs_b:
            raise click.UsageError("no runs after --; give B's runs after it: bench compare A1 A2 -- B1 B2")
    elif len(runs) == 2:
        runs_a, runs_b = runs[:1], runs[1:]
    else:
        raise click.UsageError(f"got {len(runs)} runs without --; give RUN_A RUN_B, or A1 A2 ... -- B1 B2 ...")
    result = compare_runs(list(runs_a), list(runs_b), n_bootstrap=n_bootstrap, seed=seed, top=top)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    for side, paths in (("A", result.runs_a), ("B", result.runs_b)):
        click.echo(f"{side}: {len(paths)} run(s): {', '.join(paths)}")
    rows = []
    for key, column in result.columns.items():
        low, high = column["interval"]
        rows.append((key, _mean_std(column["a"], column["std_a"]), _mean_std(column["b"], column["std_b"]),
                     _percent(column["diff"], 2, True), f"[{_percent(low, 2, True)}, {_percent(high, 2, True)}]"))
    click.echo("\n" + _table(rows, ["metric (%)", "A mean ± std", "B mean ± std", "B − A", "95% interval"]))
    click.echo(
        f"\nintervals: two-level bootstrap, {n_bootstrap} resamples of the seeds and of the images, seed {seed}; "
        f"P(B > A) = {result.probability_of_improvement:.2f} over {len(result.runs_a) * len(result.runs_b)} run pair(s)"
    )
    click.echo(result.verdict)
    if result.differences is None:
        click.echo("\nHow the runs were trained is unknown (no result.json beside the scores); "
                   "the difference may come from anything.")
    elif [d for d in result.differences if d["field"] != "seed"]:
        rows = [(d["field"], _fact(d["a"]), _fact(d["b"])) for d in result.differences]
        click.echo(f"\nThe runs differ in more than the method ({len(rows)}): the difference measures all of it\n"
                   + tabulate(rows, headers=["field", "A", "B"], disable_numparse=True))
    elif result.differences:
        seeds = result.differences[0]
        click.echo(f"\nSame protocol, epochs, size, augmentation, loss, backbone and data; the seeds differ "
                   f"(A: {_fact(seeds['a'])}, B: {_fact(seeds['b'])}).")
    else:
        click.echo("\nSame protocol, epochs, size, augmentation, loss, backbone, data and seeds.")
    if result.largest_changes:
        rows = [(x["name"], _percent(x["ap_a"]), _percent(x["ap_b"]), _percent(x["diff"], 1, True))
                for x in result.largest_changes]
        click.echo(
            "\nlargest per-class AP changes (B − A)\n"
            + _table(rows, ["class", "AP A (%)", "AP B (%)", "change (points)"])
        )


def _mean_std(mean: float, std: float | None) -> str:
    return _percent(mean, 2) if std is None else f"{_percent(mean, 2)} ± {_percent(std, 2)}"


def _fact(value) -> str:
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


COMMANDS = [metrics, compare]
