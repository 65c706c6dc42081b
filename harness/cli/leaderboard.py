"""``bench leaderboard``: submit validated runs, build the tables, reproduce a submission."""

from __future__ import annotations

import dataclasses
import json
import sys
import warnings
from pathlib import Path

import click

from harness.cli.options import load_registry, plugin_option
from harness.errors import UserError

_ROOT = click.option(
    "--leaderboards", "root", default="leaderboards", show_default=True, type=click.Path(path_type=Path),
    help="The leaderboards folder (submissions/ and tables/).",
)
_JSON = click.option("--json", "as_json", is_flag=True, help="Print the record as JSON instead of text.")


@click.group()
def leaderboard() -> None:
    """Submit run folders to the leaderboards, build their tables, reproduce submissions."""


def _warn_if_probabilities(run_dir: Path) -> None:
    """One line on stderr when every stored score lies in [0, 1] (probabilities stored as logits)."""
    from harness.metrics import PROBABILITY_WARNING, looks_like_probabilities
    from harness.rundir import read_scores

    scores_file = Path(run_dir) / "scores.npz"
    if scores_file.is_file():
        try:
            scores = read_scores(Path(run_dir))[0]
        except UserError:
            return  # submit refuses the file in its own words
        if scores.size and looks_like_probabilities(scores):
            click.echo(f"Warning: {scores_file}: {PROBABILITY_WARNING}; a run must store logits: pass --scores "
                       "probabilities to convert them, or train with a model whose outputs are logits", err=True)


@leaderboard.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@_ROOT
@plugin_option
@click.option("--scores", "score_kind", type=click.Choice(["logits", "probabilities"]), default="logits",
              show_default=True, help="What the run's scores are; probabilities are converted to logits (clipped to "
                                      "[1e-12, 1 − 1e-12], stored as float32) and the metrics re-scored from them.")
@_JSON
def submit(run_dir: Path, root: Path, plugins: tuple[str, ...], score_kind: str, as_json: bool) -> None:
    """Check RUN_DIR (schema, re-scored metrics, protocol hash, fingerprint proven from the test
    labels, deviations recomputed from run.json and log.json, no stored copy or seed) and store
    it with its configuration, log and plugin code; a refusal is one line naming file and field.

    Scores are logits unless --scores probabilities says otherwise; scores that all lie in
    [0, 1] are warned about in one line."""
    from harness.leaderboard import submit as submit_run

    if score_kind == "logits":
        _warn_if_probabilities(run_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # said above in one line
        bundle = submit_run(run_dir, root, load_registry(plugins), score_kind=score_kind)
    if as_json:
        click.echo(json.dumps({"path": str(bundle.path), **bundle.to_dict()}, indent=2))
        return
    converted = f", scores converted from {bundle.scores_converted}" if bundle.scores_converted else ""
    click.echo(f"accepted as {bundle.id} ({bundle.data} data{converted}): {bundle.path}")


@leaderboard.command()
@_ROOT
@click.option("--format", "formats", default="md,csv,tex,html", show_default=True,
              help="Comma-separated output formats: md, csv, tex, html.")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 listing the files a build would change.")
@click.option("--baselines", type=click.Path(path_type=Path), default=None,
              help="The folder of the paper's rows (wang2019/table*.csv)  [default: baselines/ beside the leaderboards "
                   "folder; without one, no paper rows]")
@_JSON
def build(root: Path, formats: str, check: bool, baselines: Path | None, as_json: bool) -> None:
    """Check stored submissions and write one table per dataset and protocol to tables/, with
    index pages (deterministic: no dates). A build checks again only submissions whose files
    changed since this machine last checked them (checked-bundles.json); --check
    checks every one."""
    from harness.leaderboard import build_outputs, stale_files, write_outputs

    chosen = tuple(f.strip() for f in formats.split(",") if f.strip())
    outputs = build_outputs(root, chosen, baselines, incremental=not check)
    if check:
        stale = stale_files(root, outputs, chosen)
        if as_json:
            click.echo(json.dumps({"files": sorted(outputs), "stale": [{"file": f, "reason": r} for f, r in stale]},
                                  indent=2))
        else:
            for name, reason in stale:
                click.echo(f"stale: {root / name} ({reason})")
        if stale:
            raise UserError(f"{len(stale)} leaderboard file(s) are stale; run `bench leaderboard build` and commit them")
        if not as_json:
            click.echo(f"{len(outputs)} leaderboard files are up to date")
        return
    changed = write_outputs(root, outputs, chosen)
    if as_json:
        click.echo(json.dumps({"files": sorted(outputs), "changed": [{"file": f, "reason": r} for f, r in changed]},
                              indent=2))
        return
    click.echo(f"wrote {len(outputs)} files to {root / 'tables'} ({len(changed)} changed)")


@leaderboard.command()
@click.argument("submission")
@_ROOT
@click.option("--data-root", type=click.Path(path_type=str), help="Where this machine holds the run's dataset "
                                                                 "(default: the folder the run recorded).")
@click.option("--sign", "key", type=click.Path(path_type=Path), metavar="KEY",
              help="A maintainer's SSH private key, listed in allowed_signers: sign the verification and write it.")
@click.option("--quiet", is_flag=True, help="No per-epoch lines.")
@_JSON
def reproduce(submission: str, root: Path, data_root: str | None, key: Path | None, quiet: bool, as_json: bool) -> None:
    """Train SUBMISSION (a stored submission file or its id) again, running the submitter's
    plugin code stored with it (review it, and run this in a sandbox), and compare: every field
    of the result but timings and the machine, and the scores (bit-identical on a CPU, within
    the seed-derived tolerance on a GPU). A match with --sign writes the signed verification
    beside the submission (without --sign nothing is written); a mismatch exits 1."""
    from harness.leaderboard import reproduce as reproduce_run
    from harness.progress import to_stderr

    to_stderr(quiet or as_json)
    outcome = reproduce_run(submission, root, data_root, key)
    if as_json:
        click.echo(json.dumps({"matches": outcome.matches, "submission": outcome.bundle.id,
                               "difference": outcome.difference, "comparison": dataclasses.asdict(outcome.comparison), "tolerance": outcome.tolerance,
                               "code_changed": outcome.code_changed, "seconds": round(outcome.seconds, 1),
                               "verification": dataclasses.asdict(outcome.verification) if outcome.verification else None},
                              indent=2))
    elif outcome.matches and key is not None:
        click.echo(f"verified ({outcome.verification.outcome}) in {outcome.seconds:.0f} s, signed: "
                   f"{outcome.bundle.verification_path}")
    elif outcome.matches:
        click.echo(f"matches ({outcome.verification.outcome}) in {outcome.seconds:.0f} s; nothing written: a maintainer "
                   "signs the verification with --sign KEY")
    if not outcome.matches:
        if not as_json:
            from harness.errors import cut

            verbose = (click.get_current_context().find_root().obj or {}).get("verbose")
            click.echo(f"Error: {outcome.message() if verbose else cut(outcome.message())}", err=True)
        sys.exit(1)


COMMANDS = [leaderboard]
