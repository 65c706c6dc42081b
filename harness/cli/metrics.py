"""``bench metrics`` and ``bench compare``: the metrics engine on score files and run folders.

Inputs are either two ``.npy`` arrays (scores N×C, labels N×C) or one run folder / ``scores.npz``
(scores, labels and image ids). Bad input of any kind is a ``BadInput``: one line, exit code 2.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import click
import numpy as np
from tabulate import tabulate

from harness.errors import BadInput
from harness.metrics import PAPER_COLUMNS, bootstrap, evaluate, format_table, paired_bootstrap, validate
from harness.results import RESULT_FILE, read_scores


def _load_npy(path: str) -> np.ndarray:
    file = Path(path)
    if not file.is_file():
        raise BadInput(f"{file}: no such file; give an N×C .npy array")
    try:
        array = np.load(file, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise BadInput(f"{file}: not a readable .npy file ({_one_line(error)})") from None
    if not isinstance(array, np.ndarray):
        array.close()
        raise BadInput(f"{file}: an .npz archive; pass it alone (bench metrics {file}) instead of with LABELS")
    return array


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


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


def _load(inputs: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(scores, labels, ids)`` from ``SCORES LABELS`` (.npy, no ids) or one run folder / .npz,
    checked with the file names in any error."""
    if len(inputs) == 2:
        scores, labels, ids = _load_npy(inputs[0]), _load_npy(inputs[1]), None
        names = (inputs[0], inputs[1])
    elif len(inputs) == 1:
        path = Path(inputs[0])
        if path.is_file() and not zipfile.is_zipfile(path):
            raise BadInput(f"{path}: not a .npz archive; give a run folder or scores.npz, or SCORES.npy LABELS.npy")
        scores, labels, ids = read_scores(path)
        names = (f"{path} (scores)", f"{path} (labels)")
        if len(ids) != len(scores):
            raise BadInput(f"{path}: {len(ids)} ids for {len(scores)} rows of scores; the run folder is damaged")
    else:
        raise BadInput(f"got {len(inputs)} paths; give SCORES.npy LABELS.npy, or one run folder or scores.npz")
    scores, labels = validate(scores, labels, names=names)
    return scores, labels, ids


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
def metrics(inputs: tuple[str, ...], output: str, k: int, threshold: float, n_bootstrap: int, seed: int) -> None:
    """Every metric of METRICS.md for SCORES.npy LABELS.npy (N×C), or for one run folder or
    scores.npz.

    Labels are 1 (present), 0 (absent) or -1 (ignored); scores are logits.
    """
    scores, labels, _ = _load(inputs)
    result = evaluate(scores, labels, k=k, threshold=threshold)
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


def _aligned(run_a: str, run_b: str):
    """Scores of both runs and their shared labels, B reordered to A's image ids; refuses
    different id sets, duplicate ids, and labels that differ."""
    scores_a, labels_a, ids_a = _load((run_a,))
    scores_b, labels_b, ids_b = _load((run_b,))
    ids_a, ids_b = np.asarray(ids_a).astype(str), np.asarray(ids_b).astype(str)
    for run, ids in ((run_a, ids_a), (run_b, ids_b)):
        unique, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            raise BadInput(f"{run}: image id '{unique[counts > 1][0]}' appears more than once; ids must be unique")
    only_a, only_b = ids_a[~np.isin(ids_a, ids_b)], ids_b[~np.isin(ids_b, ids_a)]
    if only_a.size or only_b.size:
        parts = [f"{len(ids)} only in {run} (first '{ids[0]}')" for run, ids in ((run_a, only_a), (run_b, only_b)) if ids.size]
        raise BadInput(f"{run_a} and {run_b} score different images: {'; '.join(parts)}; compare runs on the same split")
    if scores_a.shape[1] != scores_b.shape[1]:
        raise BadInput(f"{run_a} has {scores_a.shape[1]} classes but {run_b} has {scores_b.shape[1]}; compare runs on the same dataset")
    sorter = np.argsort(ids_b)
    position = sorter[np.searchsorted(ids_b, ids_a, sorter=sorter)]
    scores_b, labels_b = scores_b[position], labels_b[position]
    differ = labels_a != labels_b
    if differ.any():
        row, column = divmod(int(np.argmax(differ)), differ.shape[1])
        raise BadInput(
            f"labels differ for image '{ids_a[row]}', class {column}: {labels_a[row, column]} in {run_a}, "
            f"{labels_b[row, column]} in {run_b}; both runs must use the same labels"
        )
    return scores_a, scores_b, labels_a


@click.command("compare")
@click.argument("run_a")
@click.argument("run_b")
@click.option("--bootstrap", "n_bootstrap", default=1000, show_default=True, type=click.IntRange(min=1), help="Paired resamples of the images.")
@click.option("--seed", default=0, show_default=True, help="Seed of the bootstrap resampling.")
@click.option("--top", default=5, show_default=True, type=click.IntRange(min=0), help="How many classes with the largest AP change to list.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (fractions).")
def compare(run_a: str, run_b: str, n_bootstrap: int, seed: int, top: int, as_json: bool) -> None:
    """Paired comparison of the map of RUN_A and RUN_B (run folders or scores.npz files).

    Images are matched by id. The difference is B − A with a 95% paired-bootstrap interval;
    an interval that excludes 0 means the runs differ at that level.
    """
    scores_a, scores_b, labels = _aligned(run_a, run_b)
    result = paired_bootstrap(scores_a, scores_b, labels, n_bootstrap, seed)
    low, high = result["map_diff_interval"]
    excludes_zero = low is not None and (low > 0 or high < 0)
    changed = [c for c, diff in enumerate(result["per_class_ap_diff"]) if diff]
    changed.sort(key=lambda c: -abs(result["per_class_ap_diff"][c]))
    names = _class_names(run_b, len(result["per_class_ap_diff"]))
    largest = [
        {
            "class": c,
            "name": names[c],
            "ap_a": result["per_class_ap_a"][c],
            "ap_b": result["per_class_ap_b"][c],
            "diff": result["per_class_ap_diff"][c],
        }
        for c in changed[:top]
    ]
    if as_json:
        record = {"run_a": run_a, "run_b": run_b, **result, "excludes_zero": excludes_zero, "largest_changes": largest}
        click.echo(json.dumps(record, indent=2))
        return
    click.echo(f"map A: {_percent(result['map_a'])}  ({run_a})")
    click.echo(f"map B: {_percent(result['map_b'])}  ({run_b})")
    click.echo(
        f"map B − A: {_percent(result['map_diff'], 2, True)} points, 95% interval "
        f"[{_percent(low, 2, True)}, {_percent(high, 2, True)}] "
        f"(paired bootstrap, {n_bootstrap} resamples of the images, seed {seed})"
    )
    if excludes_zero:
        better, worse = ("B", "A") if low > 0 else ("A", "B")
        click.echo(f"The interval excludes 0: {better}'s map is higher than {worse}'s at the 95% level.")
    else:
        click.echo("The interval includes 0: the difference in map is not significant at the 95% level.")
    if largest:
        rows = [(x["name"], _percent(x["ap_a"]), _percent(x["ap_b"]), _percent(x["diff"], 1, True)) for x in largest]
        click.echo(
            "\nlargest per-class AP changes (B − A)\n"
            + _table(rows, ["class", "AP A (%)", "AP B (%)", "change (points)"])
        )


COMMANDS = [metrics, compare]
