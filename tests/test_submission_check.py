"""One home per rule: submit and build run one ``check_submission``, runs are aligned by one
``align_by_id``, and a build needs no checkout's ``baselines/`` folder."""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from harness.alignment import Scored, align_by_id
from harness.cli import main
from harness.comparison import aligned_runs
from harness.errors import BadInput, UserError
from harness.leaderboard import build_outputs, stale_files, submission_check
from harness.leaderboard import checks
from harness.leaderboard.build import build_tables
from harness.leaderboard.reproduce import compare_scores
from runs import make_run
from test_leaderboard_submit import TOY_PLUGIN

REPOSITORY = Path(__file__).resolve().parents[1]
HINT = "do the thing"


def leaderboard(*args):
    return CliRunner().invoke(main, ["leaderboard", *map(str, args)])


def test_submit_and_build_run_the_one_check_submission(tmp_path, monkeypatch):
    plugin = tmp_path / "toy_plugin.py"
    plugin.write_text(TOY_PLUGIN)
    calls = []
    real = submission_check.check_submission

    def spy(submission, registry, *, stored=None, root=None):
        calls.append((submission.record.run_id, stored is not None))
        return real(submission, registry, stored=stored, root=root)

    monkeypatch.setattr(submission_check, "check_submission", spy)
    monkeypatch.setattr(importlib.import_module("harness.leaderboard.submit"), "check_submission", spy)
    run = make_run(tmp_path / "runs", run_files=True, epochs=3)
    root = tmp_path / "lb"
    result = leaderboard("submit", run, "--leaderboards", root, "--plugin", plugin)
    assert result.exit_code == 0, result.output
    assert calls == [(run.name, False)]
    result = leaderboard("build", "--leaderboards", root, "--check")
    assert calls[1:] == [(run.name, True)], result.output


def test_a_check_refused_by_submit_is_refused_by_build_in_the_same_words(tmp_path, monkeypatch):
    plugin = tmp_path / "toy_plugin.py"
    plugin.write_text(TOY_PLUGIN)
    run = make_run(tmp_path / "runs", run_files=True, epochs=3)
    root = tmp_path / "lb"
    assert leaderboard("submit", run, "--leaderboards", root, "--plugin", plugin).exit_code == 0
    def refuse(record, log, where):
        raise UserError(f"{where.result}: refused by the one check")

    monkeypatch.setattr(checks, "check_ranges", refuse)
    submitted = leaderboard("submit", run, "--leaderboards", tmp_path / "other", "--plugin", plugin)
    built = leaderboard("build", "--leaderboards", root, "--check")
    assert submitted.output.endswith("result.json: refused by the one check\n"), submitted.output
    assert built.output.endswith(".json (result): refused by the one check\n"), built.output


def scored(name, ids, scores, labels=None):
    return Scored(name, np.asarray(ids), np.asarray(scores, dtype=np.float32),
                  None if labels is None else np.asarray(labels, dtype=np.int8))


def test_align_by_id_puts_every_run_in_the_first_run_s_image_order():
    first = scored("a", ["x", "y", "z"], [[0], [1], [2]], [[1], [0], [1]])
    second = scored("b", ["z", "x", "y"], [[20], [0], [10]], [[1], [1], [0]])
    aligned = align_by_id([first, second], HINT)
    assert [a.ravel().tolist() for a in aligned] == [[0, 1, 2], [0, 10, 20]]


@pytest.mark.parametrize("other, message", [
    (scored("b", ["x", "q", "z"], [[0], [1], [2]]),
     "a and b score different test sets: 1 only in a (first 'y'); 1 only in b (first 'q'); do the thing"),
    (scored("b", ["x", "y"], [[0], [1]]), "a and b score different test sets: 1 only in a (first 'z'); do the thing"),
    (scored("b", ["x", "y", "z"], [[0, 0], [1, 1], [2, 2]]), "a has 1 classes but b has 2; do the thing"),
    (scored("b", ["z", "y", "x"], [[0], [1], [2]], [[0], [0], [0]]),
     "a and b score different test sets: labels differ for image 'x', class 0 (1 vs 0); do the thing"),
    (scored("b", ["x", "x", "z"], [[0], [1], [2]]), "b: image id 'x' appears more than once; ids must be unique"),
    (scored("b", np.asarray([], dtype=str), np.zeros((0, 1))),
     "a and b score different test sets: 3 only in a (first 'x'); do the thing"),
])
def test_align_by_id_refuses_another_test_set_in_one_wording(other, message):
    first = scored("a", ["x", "y", "z"], [[0], [1], [2]], [[1], [0], [1]])
    with pytest.raises(BadInput) as refused:
        align_by_id([first, other], HINT)
    assert str(refused.value) == message


def test_fuse_compare_and_reproduce_refuse_another_test_set_in_the_same_words(tmp_path):
    a = make_run(tmp_path, aug="flip")
    b = make_run(tmp_path, aug="crop", drop=3, shuffle=1)
    words = f"{a} and {b} score different test sets: 3 only in {a} (first 'img0057')"
    with pytest.raises(BadInput, match="compare runs on the same test split") as compared:
        aligned_runs([str(a), str(b)])
    assert str(compared.value).startswith(words)
    fused = CliRunner().invoke(main, ["fuse", str(a), str(b), "--out", str(tmp_path / "fused")])
    assert fused.exit_code == 2 and "score different test sets" in fused.output
    ids = np.asarray(["x", "y"])
    with pytest.raises(BadInput) as reproduced:
        compare_scores(np.zeros((2, 1), np.float32), ids, np.zeros((2, 1), np.int8), np.zeros((2, 1), np.float32),
                       np.asarray(["x", "q"]), ["c"])
    assert str(reproduced.value) == ("the submission and the re-trained run score different test sets: 1 only in the "
                                     "submission (first 'y'); 1 only in the re-trained run (first 'q'); it ran on "
                                     "other data")


def test_build_outside_a_checkout_needs_no_baselines_folder(tmp_path):
    root = tmp_path / "installed" / "leaderboards"
    shutil.copytree(REPOSITORY / "leaderboards", root)
    assert not (root.parent / "baselines").exists()
    result = leaderboard("build", "--leaderboards", root)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (root / "tables").glob("*.md")) == ["index.md", "shapes-smoke.md"]
    for name in ("shapes-smoke.md", "shapes-smoke.csv"):
        assert (root / "tables" / name).read_bytes() == (REPOSITORY / "leaderboards" / "tables" / name).read_bytes()
    # Given the checkout's folder, the build is the committed one again, file for file.
    outputs = build_outputs(root, baselines=REPOSITORY / "baselines")
    assert stale_files(REPOSITORY / "leaderboards", outputs) == []
    missing = leaderboard("build", "--leaderboards", root, "--baselines", tmp_path / "nowhere")
    assert missing.exit_code != 0 and missing.output.count("\n") == 1
    assert f"--baselines {tmp_path / 'nowhere'}: no such folder" in missing.output


def test_a_paper_protocol_table_without_baselines_says_its_paper_rows_are_left_out(tmp_path):
    plugin = tmp_path / "toy_plugin.py"
    plugin.write_text(TOY_PLUGIN)
    root = tmp_path / "lb"
    run = make_run(tmp_path / "runs", run_files=True, epochs=3)
    assert leaderboard("submit", run, "--leaderboards", root, "--plugin", plugin).exit_code == 0
    (table,) = build_tables(root)
    assert (table.dataset, table.protocol) == ("toy", "wang2019")
    assert table.remarks[-1] == ("The paper's rows are left out: there is no baselines folder beside the leaderboards "
                                 "folder (give `bench leaderboard build --baselines DIR`).")
    (with_paper,) = [t for t in build_tables(root, REPOSITORY / "baselines") if t.dataset == "toy"]
    assert not any("left out" in remark for remark in with_paper.remarks)
