"""The record of checked submissions: builds check again only new or changed bundles, a tampered
record never makes an unchecked bundle pass, and ``build --check`` checks every bundle."""

from __future__ import annotations

import json
import os
import stat

import pytest
from click.testing import CliRunner

from harness.cache import cache_root
from harness.cli import main
from harness.errors import UserError
from harness.leaderboard import submit
from harness.leaderboard.checked_record import (
    KEY_FILE,
    RECORD_FILE,
    checked_submissions,
    checker_sha256,
    digest,
    load_record,
    save_record,
)
from harness.registry import Registry
from runs import make_run
from test_leaderboard_submit import TOY_PLUGIN, edit_json, plugin_entry


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Registry:
    path = tmp_path_factory.mktemp("plugin") / "toy_plugin.py"
    path.write_text(TOY_PLUGIN)
    return Registry((str(path),))


def build(root, *extra):
    return CliRunner().invoke(main, ["leaderboard", "build", "--leaderboards", str(root), *extra])


def checked_now(root) -> int:
    return checked_submissions(root, Registry(), incremental=True)[1]


@pytest.fixture
def stored(tmp_path, registry):
    root = tmp_path / "lb"
    bundles = [submit(make_run(tmp_path / "r", seed=s, run_files=True, score_seed=s), root, registry) for s in (0, 1, 2)]
    return root, bundles


def test_a_build_checks_only_new_or_changed_submissions_and_writes_the_same_tables(tmp_path, registry, stored):
    root, bundles = stored
    assert build(root, "--check").exit_code == 1  # nothing built yet; --check neither reads nor writes the record
    assert build(root).exit_code == 0
    tables = {p.name: p.read_bytes() for p in (root / "tables").iterdir()}
    assert checked_now(root) == 0
    assert build(root).exit_code == 0
    assert {p.name: p.read_bytes() for p in (root / "tables").iterdir()} == tables
    submit(make_run(tmp_path / "r", seed=3, run_files=True, score_seed=3), root, registry)  # submit checks 0 again
    assert checked_now(root) == 1 and checked_now(root) == 0
    bundles[0].verification_path.write_text("{}")  # a new file beside a recorded bundle: checked again, refused
    with pytest.raises(UserError, match="verified.json"):
        checked_submissions(root, Registry(), incremental=True)
    bundles[0].verification_path.unlink()
    assert checked_now(root) == 0  # its files are again those the record holds


def test_a_bundle_edited_after_it_was_recorded_is_checked_again_and_refused(stored):
    root, bundles = stored
    assert build(root).exit_code == 0
    edit_json(bundles[1].path, lambda b: b["result"]["metrics"].update(map=0.99))
    result = build(root)
    assert result.exit_code == 1 and f"{bundles[1].path} (result): metrics.map is 0.99" in result.output and result.output.count("\n") == 1


def test_a_tampered_record_never_makes_an_unchecked_bundle_pass(stored):
    root, bundles = stored
    assert build(root).exit_code == 0
    record_path = root / RECORD_FILE
    record = json.loads(record_path.read_text())
    assert len(record["entries"]) == 3
    # an entry's table values edited: its HMAC no longer matches, so the bundle is checked again
    edited = digest(root, bundles[0].path)
    record["entries"][edited]["checked"] = record["entries"][edited]["checked"].replace('"map": ', '"map": 99.0, "x": ')
    # a bundle edited, and its old, valid entry copied to the digest of its new files
    old = digest(root, bundles[2].path)
    edit_json(bundles[2].path, lambda b: b["result"]["metrics"].update(map=0.99))
    new = digest(root, bundles[2].path)
    assert new != old
    record["entries"][new] = record["entries"][old]
    record_path.write_text(json.dumps(record))
    trusted = load_record(root, checker_sha256(Registry()))
    assert set(trusted.entries) == set(record["entries"]) - {edited, new}
    result = build(root)
    assert result.exit_code == 1 and f"{bundles[2].path} (result): metrics.map is 0.99" in result.output


@pytest.mark.parametrize("text", ["not json", "[]", '{"record_version": 1, "checker": "x", "entries": {}}',
                                  '{"record_version": 1, "checker": "%s", "entries": {"a": 1}}'])
def test_a_record_that_does_not_parse_counts_as_empty_and_is_rewritten(stored, text):
    root, _ = stored
    (root / RECORD_FILE).write_text(text.replace("%s", checker_sha256(Registry())))
    assert checked_now(root) == 3 and checked_now(root) == 0


def test_a_record_trusted_here_is_ignored_by_check(stored):
    """``--check`` (CI) checks every bundle: even an entry with a valid HMAC, as only someone
    holding this machine's key could write, does not spare a bundle from its checks."""
    root, bundles = stored
    assert build(root).exit_code == 0
    checker = checker_sha256(Registry())
    record = load_record(root, checker)
    entry = next(e for e in record.entries.values() if e[0].id == bundles[0].id)
    edit_json(bundles[0].path, lambda b: b["result"]["metrics"].update(map=0.99))
    record.entries[digest(root, bundles[0].path)] = entry
    save_record(root, record)
    assert build(root).exit_code == 0  # trusted: the key holder vouched for it
    result = build(root, "--check")
    assert result.exit_code == 1 and f"{bundles[0].path} (result): metrics.map is 0.99" in result.output


def test_the_key_is_private_and_outside_the_leaderboard(stored):
    root, _ = stored
    assert build(root).exit_code == 0
    key = cache_root() / KEY_FILE
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600 and len(key.read_bytes()) == 32
    assert not any(p.name == KEY_FILE for p in root.rglob("*"))


def test_stored_plugin_code_edited_after_it_was_recorded_is_refused(tmp_path, registry):
    root = tmp_path / "lb"
    run = make_run(tmp_path / "r", seed=0, run_files=True)
    plugin = registry.plugins[-1]
    edit_json(run / "run.json", lambda r: r["plugins"].append(plugin_entry(plugin.path, "file", plugin.sha256)))
    submit(run, root, registry)
    assert build(root).exit_code == 0
    (stored,) = (root / "submissions" / "plugins").glob("*.py")
    stored.write_text(stored.read_text() + "\n# edited\n")
    result = build(root)
    assert result.exit_code == 1 and result.output.startswith(f"Error: {stored}: missing, or not the code of sha256")
