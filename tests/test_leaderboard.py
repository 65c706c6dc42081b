"""``bench leaderboard submit`` validation and storage, and ``build`` tables."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from click.testing import CliRunner

from harness import leaderboard
from harness.cli import main
from harness.errors import UserError
from harness.fusion import fuse_runs
from harness.metrics import evaluate
from harness.registry import Registry
from runs import make_run

NO_CANONICAL = lambda name: None  # noqa: E731 - datasets that declare no canonical fingerprint

CANON_PLUGIN = '''
from harness import Dataset, DatasetSpec, hookimpl

@hookimpl
def register_datasets(register):
    register(DatasetSpec(name="canon", load=lambda root, options: Dataset("canon", [], {}),
                         canonical_fingerprint="{fingerprint}"))
'''


def invoke(*args):
    return CliRunner().invoke(main, ["leaderboard", *map(str, args)])


def edit(run_dir, change):
    path = run_dir / "result.json"
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))
    return run_dir


def test_accepted_submission_is_stored_with_compressed_rescorable_scores(tmp_path):
    run = make_run(tmp_path / "runs", dataset="toy")
    stored = leaderboard.submit(run, tmp_path / "lb", NO_CANONICAL)
    assert stored.parent == tmp_path / "lb" / "submissions" / "toy" / "wang2019"
    assert stored.name.startswith("toy-resnet101-flip-448-wang2019-seed0--") and stored.suffix == ".json"
    entry = json.loads(stored.read_text())
    assert entry["result"] == json.loads((run / "result.json").read_text())
    assert entry["submission"]["data"] == "non-canonical"
    with np.load(stored.with_suffix(".npz")) as data:
        assert evaluate(data["scores"], data["labels"]) == entry["result"]["metrics"]
        assert data["ids"].tolist() == [f"img{i:04d}" for i in range(60)]
    with pytest.raises(UserError, match="already submitted as"):
        leaderboard.submit(run, tmp_path / "lb", NO_CANONICAL)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r["metrics"].update(map=r["metrics"]["map"] + 0.01), "metrics.map is .* but re-scoring scores.npz gives"),
        (lambda r: r["metrics"]["per_class_ap"].__setitem__(0, 1.0), "metrics.per_class_ap"),
        (lambda r: r["protocol"].update(hash="0123456789abcdef"), "has hash 0123456789abcdef .* the run followed other rules"),
        (lambda r: r["protocol"].update(name="mine"), "unknown protocol 'mine'"),
        (lambda r: r.pop("seed"), "a train record needs 'seed'"),
        (lambda r: r["dataset"].update(fingerprint=3), "'dataset.fingerprint' is an integer, expected string"),
        (lambda r: r.update(metrics_version=0), "metrics version 0"),
    ],
)
def test_invalid_submissions_are_refused_with_one_line(tmp_path, change, message):
    run = edit(make_run(tmp_path / "runs"), change)
    result = invoke("submit", run, "--leaderboards", tmp_path / "lb")
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and str(run) in result.output
    with pytest.raises(UserError, match=message):
        leaderboard.submit(run, tmp_path / "lb", NO_CANONICAL)
    assert not list((tmp_path / "lb").glob("submissions/*/*/*"))


def test_smoke_protocol_hash_under_the_wang2019_name_is_named(tmp_path):
    smoke_hash = make_run(tmp_path / "s", protocol="smoke").joinpath("result.json").read_text()
    run = edit(make_run(tmp_path / "runs"), lambda r: r["protocol"].update(hash=json.loads(smoke_hash)["protocol"]["hash"]))
    with pytest.raises(UserError, match="that is the hash of 'smoke'"):
        leaderboard.submit(run, tmp_path / "lb", NO_CANONICAL)


def test_canonical_fingerprint_is_required_where_declared(tmp_path):
    plugin = tmp_path / "canon_plugin.py"
    good = make_run(tmp_path / "runs", dataset="canon")
    canonical = json.loads((good / "result.json").read_text())["dataset"]["fingerprint"]
    plugin.write_text(CANON_PLUGIN.replace("{fingerprint}", canonical))
    bad = make_run(tmp_path / "runs", dataset="canon", aug="crop", fingerprint="fp-partial")
    result = invoke("submit", good, "--leaderboards", tmp_path / "lb", "--plugin", plugin)
    assert result.exit_code == 0, result.output
    assert json.loads(next((tmp_path / "lb").glob("submissions/canon/*/*.json")).read_text())["submission"]["data"] == "canonical"
    result = invoke("submit", bad, "--leaderboards", tmp_path / "lb", "--plugin", plugin)
    assert result.exit_code == 1 and f"fingerprint fp-partial (coverage 100.0%) is not the canonical {canonical}" in result.output
    result = invoke("submit", make_run(tmp_path / "runs", dataset="nosuch"), "--leaderboards", tmp_path / "lb")
    assert result.exit_code == 1 and "unknown dataset 'nosuch'" in result.output


def test_voc2007_declares_a_canonical_fingerprint():
    assert leaderboard.registry_canonical()("voc2007")


def test_concurrent_submissions_all_land_and_a_duplicate_lands_once(tmp_path):
    runs = [make_run(tmp_path / "runs", seed=seed) for seed in range(4)]
    outcomes: list[str] = []

    def submit(run):
        try:
            outcomes.append(str(leaderboard.submit(run, tmp_path / "lb", NO_CANONICAL)))
        except UserError as error:
            outcomes.append(f"refused: {error}")

    threads = [threading.Thread(target=submit, args=(run,)) for run in runs + [runs[0]]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stored = sorted((tmp_path / "lb").glob("submissions/toy/wang2019/*.json"))
    assert len(stored) == 4 and len(list(stored[0].parent.glob("*.npz"))) == 4
    assert sum(o.startswith("refused: ") and "already submitted" in o for o in outcomes) == 1
    assert not list(stored[0].parent.glob(".*"))  # no temporary files left


def submit_all(root, *run_dirs):
    for run in run_dirs:
        leaderboard.submit(run, root, NO_CANONICAL)


def table(root, name, fmt="md"):
    return (root / "tables" / f"{name}.{fmt}").read_text()


def test_seeds_become_one_row_with_mean_and_std_beside_the_paper_row(tmp_path):
    runs = [make_run(tmp_path / "runs", dataset="voc2007", size=448, seed=s, gpu="NVIDIA H100") for s in (0, 1)]
    maps = [100 * json.loads((r / "result.json").read_text())["metrics"]["map"] for r in runs]
    root = tmp_path / "lb"
    submit_all(root, *runs)
    assert invoke("build", "--leaderboards", root).exit_code == 0
    lines = table(root, "voc2007-wang2019").splitlines()
    paper = next(i for i, line in enumerate(lines) if line.startswith("| resnet101  | M1  ") and "| 448 " in line and "Table 2" in line)
    ours, delta = lines[paper + 1], lines[paper + 2]
    mean, std = np.mean(maps), np.std(maps, ddof=1)
    assert "| reproduced " in ours and f"| {mean:.1f} ± {std:.1f} " in ours
    assert "| 2 " in ours and "| 0,1 " in ours and "NVIDIA H100" in ours and "| fp32 " in ours
    assert "multilabel-bench 0.2.0" in ours and "non-canonical, coverage 100.0%" in ours
    assert "Δ reproduced − paper" in delta and f"| {mean - 94.1:+.1f} " in delta
    csv_text = table(root, "voc2007-wang2019", "csv")
    assert f"{mean:.2f},{std:.2f}" in csv_text
    html_text = table(root, "voc2007-wang2019", "html")
    assert html_text.count("<svg") == 1 and "class0" in html_text and "<script" not in html_text
    assert "\\pm" in table(root, "voc2007-wang2019", "tex")
    readme = (root / "README.md").read_text()
    assert "| voc2007, protocol wang2019 | 1 | 2 |" in readme


def test_different_plugins_precision_or_deviations_stay_separate_rows(tmp_path):
    root = tmp_path / "lb"
    submit_all(
        root,
        make_run(tmp_path / "a", protocol="smoke", seed=0),
        make_run(tmp_path / "b", protocol="smoke", seed=1, deviations={"epochs": {"protocol": 6, "used": 2}}),
    )
    invoke("build", "--leaderboards", root)
    text = table(root, "toy-smoke")
    assert text.count("| reproduced ") == 2 and "epochs: 6 → 2" in text and "Table 2" not in text


def test_fusion_runs_are_named_by_their_label_with_member_sizes(tmp_path):
    members = [make_run(tmp_path / "runs", dataset="voc2007", aug="mixup", size=s, score_seed=s) for s in (384, 448, 512)]
    fused = fuse_runs(members, tmp_path / "runs", Registry().get("fusion", "mean"), "ScaleEn").path
    root = tmp_path / "lb"
    submit_all(root, fused)
    invoke("build", "--leaderboards", root)
    lines = table(root, "voc2007-wang2019").splitlines()
    paper = next(i for i, line in enumerate(lines) if line.startswith("| resnet101  | ScaleEn "))
    assert "| 384+448+512 " in lines[paper + 1] and "| reproduced " in lines[paper + 1]
    assert "mean v1 (multilabel-bench 0.2.0)" in lines[paper + 1]


def test_check_detects_stale_tables_and_build_is_deterministic(tmp_path):
    root = tmp_path / "lb"
    submit_all(root, make_run(tmp_path / "runs", seed=0))
    assert invoke("build", "--leaderboards", root).exit_code == 0
    first = {p: p.read_text() for p in root.rglob("*") if p.is_file() and "submissions" not in p.parts}
    result = invoke("build", "--leaderboards", root, "--check")
    assert result.exit_code == 0 and "up to date" in result.output
    submit_all(root, make_run(tmp_path / "runs", seed=1))
    result = invoke("build", "--leaderboards", root, "--check")
    assert result.exit_code == 1
    assert f"stale: {root / 'tables' / 'toy-wang2019.md'} (changed)" in result.output
    assert "run `bench leaderboard build`" in result.output
    (root / "tables" / "old-table.md").write_text("x")
    result = invoke("build", "--leaderboards", root, "--check")
    assert "tables/old-table.md (no longer generated)" in result.output
    assert invoke("build", "--leaderboards", root).exit_code == 0
    assert not (root / "tables" / "old-table.md").exists()
    assert invoke("build", "--leaderboards", root, "--check").exit_code == 0
    (root / "submissions" / "toy" / "wang2019").joinpath(sorted(p.name for p in (root / "submissions" / "toy" / "wang2019").glob("*seed1*.json"))[0]).unlink()
    invoke("build", "--leaderboards", root)
    assert {p: p.read_text() for p in first} == first
