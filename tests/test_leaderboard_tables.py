"""``bench leaderboard build``: rows, sections, columns, escaping, checks of stored bundles."""

from __future__ import annotations

import csv
import io
import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.fusion import fuse_runs
from harness.leaderboard import render, submit
from harness.leaderboard.bundle import stored_bundles
from harness.registry import Registry
from runs import make_run
from test_leaderboard_submit import TOY_PLUGIN, voc_data


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Registry:
    path = tmp_path_factory.mktemp("plugin") / "toy_plugin.py"
    path.write_text(TOY_PLUGIN)
    return Registry((str(path),))


@pytest.fixture(scope="module")
def voc():
    return voc_data()


def build(root, *extra):
    result = CliRunner().invoke(main, ["leaderboard", "build", "--leaderboards", str(root), *extra])
    assert result.exit_code == 0, result.output
    return result


def table(root, name, fmt="md"):
    return (root / "tables" / f"{name}.{fmt}").read_text(encoding="utf-8")


def metric(run, key):
    return 100 * json.loads((run / "result.json").read_text())["metrics"][key]


def md_rows(text, section_title):
    """The cells of every row of one Markdown section (split on unescaped pipes)."""
    section = text.split(f"## {section_title}", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|") and not re.fullmatch(r"[|\- ]+", line)]
    return [[c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines]


def test_seeds_are_one_row_with_mean_and_std_beside_the_paper_row_and_its_difference(tmp_path, voc):
    root = tmp_path / "lb"
    runs = [make_run(tmp_path / "runs", dataset="voc2007", data=voc, seed=s, run_files=True, gpu="NVIDIA H100")
            for s in (0, 1)]
    for run in runs:
        submit(run, root, Registry())
    build(root)
    maps = [metric(r, "map") for r in runs]
    mean, std = np.mean(maps), np.std(maps, ddof=1)
    rows = md_rows(table(root, "voc2007-wang2019"), render.SECTION_TITLES["protocol"])
    header = rows[0]
    column = {name: header.index(name) for name in header}
    paper = next(i for i, r in enumerate(rows) if r[:6] == ["resnet101", "baseline", "M1", "bce", "448", "wang2019 Table 2"])
    ours, delta = rows[paper + 1], rows[paper + 2]
    assert ours[column["source"]] == "reproduced" and ours[column["mAP"]] == f"{mean:.1f} ± {std:.1f}"
    assert ours[column["seeds"]] == "0,1" and ours[column["runs"]] == "2" and ours[column["verification"]] == "self-reported"
    assert ours[column["data"]] == "canonical" and ours[column["device"]] == "NVIDIA H100"
    assert delta[column["source"]] == "Δ reproduced − paper" and delta[column["mAP"]] == f"{mean - 94.1:+.1f}"
    assert "Rows with deviations" not in table(root, "voc2007-wang2019")
    records = list(csv.DictReader(io.StringIO(table(root, "voc2007-wang2019", "csv"))))
    reproduced = next(r for r in records if r["row"] == "reproduced")
    assert reproduced["map"] == f"{mean:.2f}" and reproduced["map_std"] == f"{std:.2f}"
    assert float(next(r for r in records if r["row"] == "delta")["map"]) == pytest.approx(mean - 94.1, abs=0.006)
    assert f"{mean:.1f} $\\pm$ {std:.1f}" in table(root, "voc2007-wang2019", "tex")
    assert table(root, "voc2007-wang2019", "html").count("<svg") == 1


def test_rows_with_deviations_have_their_own_section_and_no_difference_to_the_paper(tmp_path, voc):
    root = tmp_path / "lb"
    submit(make_run(tmp_path / "a", dataset="voc2007", data=voc, run_files=True), root, Registry())
    submit(make_run(tmp_path / "b", dataset="voc2007", data=voc, seed=1, run_files=True, epochs=2), root, Registry())
    build(root)
    text = table(root, "voc2007-wang2019")
    protocol = md_rows(text, render.SECTION_TITLES["protocol"])
    deviating = md_rows(text, render.SECTION_TITLES["deviations"])
    assert [r[5] for r in protocol].count("reproduced") == 1 and [r[5] for r in protocol].count("Δ reproduced − paper") == 1
    assert len(deviating) == 2 and deviating[1][-1] == "epochs: 40 → 2" and deviating[1][14] == "1"  # seeds
    sections = [r["section"] for r in csv.DictReader(io.StringIO(table(root, "voc2007-wang2019", "csv"))) if r["row"] == "reproduced"]
    assert sorted(sections) == ["deviations", "protocol"]
    assert table(root, "voc2007-wang2019", "tex").count("\\begin{tabular}") == 2
    html = table(root, "voc2007-wang2019", "html")
    assert 'data-section="deviations"' in html and '<span class="badge deviation">deviation</span> epochs: 40 → 2' in html


def test_losses_never_merge_and_methods_are_named_beside_their_backbone(tmp_path, registry):
    root = tmp_path / "lb"
    runs = [
        make_run(tmp_path / "bce", seed=0, run_files=True),
        make_run(tmp_path / "asl", seed=0, loss="asl", run_files=True),
        make_run(tmp_path / "asl", seed=1, loss="asl", run_files=True),
        make_run(tmp_path / "csra", seed=0, model="csra", backbone="resnet101", run_files=True),
    ]
    for run in runs:
        submit(run, root, registry)
    members = [make_run(tmp_path / "m", aug=aug, size=512, seed=0, score_seed=7 + i, run_files=True)
               for i, aug in enumerate(("crop", "mixup"))]
    for run in members:
        submit(run, root, registry)
    submit(fuse_runs(members, tmp_path / "f", Registry().get("fusion", "mean"), "DistrEn").path, root, registry)
    build(root)
    text = table(root, "toy-wang2019")
    protocol = md_rows(text, render.SECTION_TITLES["protocol"])[1:]
    deviating = md_rows(text, render.SECTION_TITLES["deviations"])[1:]
    shown = sorted(tuple(r[:5]) for r in protocol)
    assert shown == sorted([("resnet101", "baseline", "M1", "bce", "448"), ("resnet101", "csra", "M1", "bce", "448"),
                            ("resnet101", "baseline", "M2", "bce", "512"), ("resnet101", "baseline", "M3", "bce", "512"),
                            ("resnet101", "DistrEn", "M2+M3", "bce", "512")])
    (asl,) = deviating
    assert asl[:5] == ["resnet101", "baseline", "M1", "asl", "448"] and asl[14:16] == ["0,1", "2"]
    assert asl[-1].startswith("loss: bce → asl")
    expected = np.mean([metric(runs[1], "map"), metric(runs[2], "map")])
    assert asl[7].startswith(f"{expected:.1f} ± ")


def test_every_format_escapes_what_it_must(tmp_path, registry):
    hostile = "=a|b\\c$d{e}f~g^h&i%j_k#l<m>n"
    root = tmp_path / "lb"
    submit(make_run(tmp_path / "r", model=hostile, run_id="hostile", run_files=True), root, registry)
    build(root)
    md = table(root, "toy-wang2019")
    row = md_rows(md, render.SECTION_TITLES["protocol"])[1]
    assert len(row) == len(md_rows(md, render.SECTION_TITLES["protocol"])[0])  # no cell was split
    assert "=a\\|b\\\\c$d{e}f~g^h&i%j_k#l<m>n" in md
    tex = table(root, "toy-wang2019", "tex")
    assert ("=a\\textbar{}b\\textbackslash{}c\\$d\\{e\\}f\\textasciitilde{}g\\textasciicircum{}h\\&i\\%j\\_k\\#l"
            "\\textless{}m\\textgreater{}n") in tex
    assert all(line.count(" & ") + 1 == len(render.columns("protocol")) for line in tex.splitlines() if line.endswith("\\\\"))
    records = list(csv.reader(io.StringIO(table(root, "toy-wang2019", "csv"))))
    assert records[1][4] == "'" + hostile  # backbone: a leading = would be a formula
    html = table(root, "toy-wang2019", "html")
    assert "=a|b\\c$d{e}f~g^h&amp;i%j_k#l&lt;m&gt;n" in html and "<m>" not in html


@pytest.mark.parametrize(
    "text, escaped",
    [("-1.5", "-1.5"), ("+2", "+2"), ("-cmd|' /C calc'!A0", "'-cmd|' /C calc'!A0"), ("@SUM(A1)", "'@SUM(A1)"),
     ("=1+1", "'=1+1"), ("+x", "'+x"), ("\tx", "'\tx"), ("a=b", "a=b"), ("", "")],
)
def test_csv_cells_that_a_spreadsheet_would_run_are_quoted_as_text(text, escaped):
    assert render.csv_escape(text) == escaped


def test_latex_and_markdown_escapes_cover_every_special_character():
    assert render.latex_escape("$ { } ~ ^ \\ & % _ #") == (
        "\\$ \\{ \\} \\textasciitilde{} \\textasciicircum{} \\textbackslash{} \\& \\% \\_ \\#")
    assert render.latex_escape("84.3 ± 1.9, Δ −0.2 → x") == "84.3 $\\pm$ 1.9, $\\Delta$ $-$0.2 $\\to$ x"
    assert render.markdown_escape("a|b\\|c\nd") == "a\\|b\\\\\\|c d"


def test_check_finds_stale_tables_and_build_is_deterministic(tmp_path, registry):
    root = tmp_path / "lb"
    submit(make_run(tmp_path / "r", seed=0, run_files=True), root, registry)
    build(root)
    first = {p: p.read_bytes() for p in (root / "tables").iterdir()}
    assert sorted(p.name for p in first)[:4] == ["coco2014-wang2019.csv", "coco2014-wang2019.html",
                                                 "coco2014-wang2019.md", "coco2014-wang2019.tex"]
    assert {"index.md", "index.html", "toy-wang2019.html"} <= {p.name for p in first}
    assert "up to date" in build(root, "--check").output
    submit(make_run(tmp_path / "r", seed=1, run_files=True), root, registry)
    result = CliRunner().invoke(main, ["leaderboard", "build", "--leaderboards", str(root), "--check"])
    assert result.exit_code == 1 and f"stale: {root / 'tables' / 'toy-wang2019.md'} (changed)" in result.output
    assert "run `bench leaderboard build`" in result.output
    (root / "tables" / "old-table.md").write_text("x")
    result = CliRunner().invoke(main, ["leaderboard", "build", "--leaderboards", str(root), "--check", "--json"])
    assert "tables/old-table.md (no longer generated)" in json.loads(result.output.split("\nError")[0])["stale"]
    build(root)
    assert not (root / "tables" / "old-table.md").exists()
    second = sorted(root.glob("submissions/toy/wang2019/*seed1--????????????.json"))[0]
    for path in (second, second.with_name(second.name[:-5] + ".scores.npz")):
        path.unlink()
    build(root)
    assert {p: p.read_bytes() for p in (root / "tables").iterdir()} == first


def test_bundles_edited_after_submission_are_refused_at_build(tmp_path, registry):
    root = tmp_path / "lb"
    submit(make_run(tmp_path / "r", seed=0, run_files=True), root, registry)
    (path,) = root.glob("submissions/toy/wang2019/*--????????????.json")
    bundle = json.loads(path.read_text())
    bundle["result"]["train_images_per_s"] = 1e9  # not part of the content: allowed
    path.write_text(json.dumps(bundle))
    build(root)
    bundle["result"]["seed"], bundle["run"]["seed"] = 7, 7
    path.write_text(json.dumps(bundle))
    result = CliRunner().invoke(main, ["leaderboard", "build", "--leaderboards", str(root)])
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert f"{path}: its content no longer hashes to content_sha256" in result.output


def test_a_verification_counts_only_for_the_content_it_verified(tmp_path, registry):
    root = tmp_path / "lb"
    bundle = submit(make_run(tmp_path / "r", seed=0, run_files=True), root, registry)
    verification = {"submission": bundle.id, "content_sha256": bundle.content_sha256, "verified": "2026-12-01T00:00:00+00:00",
                    "outcome": "exact", "largest_difference": 0.0, "at": None, "tolerance": None,
                    "harness_version": "0.2.0", "git_commit": None, "hardware": {"device": "cpu"}, "versions": {},
                    "seconds": 1.0, "code_changed": []}
    bundle.verification_path.write_text(json.dumps(verification))
    build(root)
    assert "| verified " in table(root, "toy-wang2019") and ",verified," in table(root, "toy-wang2019", "csv")
    assert '<span class="badge verified">verified</span>' in table(root, "toy-wang2019", "html")
    verification["content_sha256"] = "0" * 64
    bundle.verification_path.write_text(json.dumps(verification))
    result = CliRunner().invoke(main, ["leaderboard", "build", "--leaderboards", str(root)])
    assert result.exit_code != 0 and "is not a verification of" in result.output
    assert len(stored_bundles(root)) == 1


def verify_by_hand(bundle) -> None:
    """A verification file as reproduce writes it (its content checked by build, not by this test)."""
    record = {"submission": bundle.id, "content_sha256": bundle.content_sha256, "verified": "2026-12-01T00:00:00+00:00",
              "outcome": "exact", "largest_difference": 0.0, "at": None, "tolerance": None, "harness_version": "0.2.0",
              "git_commit": None, "hardware": {"device": "cpu"}, "versions": {}, "seconds": 1.0, "code_changed": []}
    bundle.verification_path.write_text(json.dumps(record))


def test_a_fusion_is_verified_when_it_is_fused_again_from_verified_members(tmp_path, registry):
    root = tmp_path / "lb"
    members = [make_run(tmp_path / "m", aug=aug, size=512, score_seed=i, run_files=True)
               for i, aug in enumerate(("crop", "mixup"))]
    stored = [submit(run, root, registry) for run in members]
    result = CliRunner().invoke(main, ["leaderboard", "submit", str(fuse_runs(members, tmp_path / "f", Registry().get(
        "fusion", "mean"), "DistrEn").path), "--leaderboards", str(root), "--plugin", str(registry.plugins[-1].path), "--json"])
    assert result.exit_code == 0, result.output
    fusion = json.loads(result.output)
    assert fusion["members"] == [b.id for b in stored] and fusion["path"].endswith(f"--{fusion['id']}.json")

    def fusion_row():
        build(root)
        return next(r for r in csv.DictReader(io.StringIO(table(root, "toy-wang2019", "csv"))) if r["method"] == "DistrEn")

    verify_by_hand(stored[0])
    assert fusion_row()["verification"] == "self-reported"
    verify_by_hand(stored[1])
    assert fusion_row()["verification"] == "verified"


def test_the_committed_leaderboards_are_built_from_the_committed_submissions():
    from pathlib import Path

    from harness.leaderboard import build_outputs, stale_files

    root = Path(__file__).resolve().parents[1] / "leaderboards"
    assert stale_files(root, build_outputs(root)) == []
