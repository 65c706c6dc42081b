"""``bench leaderboard build``: rows, sections, columns, escaping, checks of stored bundles."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
from html import escape
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.errors import cut
from harness.fusion import fuse_runs
from harness.leaderboard import render, submit
from harness.leaderboard.bundle import Bundle
from harness.leaderboard.store import stored_bundles
from harness.leaderboard.signing import allowed_signers, sign_verification
from harness.naming import sha256_json, sha256_of
from harness.registry import Registry
from runs import make_run
from test_leaderboard_submit import TOY_PLUGIN, edit_json, forge_bundle, plugin_entry, voc_data

BASELINES = Path(__file__).resolve().parents[1] / "baselines"  # the paper's rows, given to builds of tmp roots


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Registry:
    path = tmp_path_factory.mktemp("plugin") / "toy_plugin.py"
    path.write_text(TOY_PLUGIN)
    return Registry((str(path),))


@pytest.fixture(scope="module")
def voc():
    return voc_data()


def build(root, *extra):
    result = CliRunner().invoke(main, ["leaderboard", "build", "--leaderboards", str(root), "--baselines", str(BASELINES), *extra])
    assert result.exit_code == 0, result.output
    return result


def build_refused(root, message: str) -> None:
    """``bench leaderboard build`` exits non-zero with exactly ``message`` as its one line."""
    result = CliRunner().invoke(main, ["leaderboard", "build", "--leaderboards", str(root), "--baselines", str(BASELINES)])
    assert result.exit_code != 0 and result.output.count("\n") == 1, result.output
    assert result.output == f"Error: {cut(message)}\n"


def the_bundle(root) -> Path:
    (path,) = root.glob("submissions/*/*/*--????????????.json")
    return path


def table(root, name, fmt="md"):
    return (root / "tables" / f"{name}.{fmt}").read_text(encoding="utf-8")


def metric(run, key):
    return 100 * json.loads((run / "result.json").read_text())["metrics"][key]


def md_rows(text, section_title):
    """The cells of every row of one Markdown section (split on unescaped pipes)."""
    section = text.split(f"## {section_title}", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|") and not re.fullmatch(r"[|\- ]+", line)]
    return [[c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines]


def provenance_rows(text):
    """The Markdown provenance table below the main tables, one dict per reproduced row."""
    header, *rows = md_rows(text, render.PROVENANCE_TITLE)
    return [dict(zip(header, row)) for row in rows]


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
    paper = next(i for i, r in enumerate(rows) if r[1:7] == ["resnet101", "baseline", "M1", "bce", "448", "wang2019 Table 2"])
    ours, delta = rows[paper + 1], rows[paper + 2]
    assert ours[column["source"]] == "reproduced" and ours[column["mAP"]] == f"{mean:.1f} ± {std:.1f}"
    assert ours[column["runs"]] == "2" and ours[column["verification"]] == "self-reported" and delta[column["rank"]] == ""
    (provenance,) = provenance_rows(table(root, "voc2007-wang2019"))
    assert provenance["row"] == "resnet101 baseline M1 448 bce (self-reported)" and provenance["seeds"] == "0,1"
    assert provenance["data"] == "canonical" and provenance["device"] == "NVIDIA H100"
    assert delta[column["source"]] == "Δ reproduced − paper" and delta[column["mAP"]] == f"{mean - 94.1:+.1f}"
    assert "Rows with deviations" not in table(root, "voc2007-wang2019")
    records = list(csv.DictReader(io.StringIO(table(root, "voc2007-wang2019", "csv"))))
    reproduced = next(r for r in records if r["row"] == "reproduced")
    assert reproduced["map"] == f"{mean:.2f}" and reproduced["map_std"] == f"{std:.2f}"
    assert float(next(r for r in records if r["row"] == "delta")["map"]) == pytest.approx(mean - 94.1, abs=0.006)
    assert f"{mean:.1f} $\\pm$ {std:.1f}" in table(root, "voc2007-wang2019", "tex")
    page = table(root, "voc2007-wang2019", "html")
    assert page.count('<table class="heat">') == 1 and page.count('<td data-column="0" data-ap=') == 20


def test_rows_with_deviations_have_their_own_section_and_no_difference_to_the_paper(tmp_path, voc):
    root = tmp_path / "lb"
    submit(make_run(tmp_path / "a", dataset="voc2007", data=voc, run_files=True), root, Registry())
    submit(make_run(tmp_path / "b", dataset="voc2007", data=voc, seed=1, run_files=True, epochs=2), root, Registry())
    build(root)
    text = table(root, "voc2007-wang2019")
    protocol = md_rows(text, render.SECTION_TITLES["protocol"])
    deviating = md_rows(text, render.SECTION_TITLES["deviations"])
    assert [r[6] for r in protocol].count("reproduced") == 1 and [r[6] for r in protocol].count("Δ reproduced − paper") == 1
    assert len(deviating) == 2 and deviating[1][-1] == "epochs: 40 → 2" and deviating[1][-2] == "1"  # runs
    assert [r["seeds"] for r in provenance_rows(text)] == ["0", "1"]
    sections = [r["section"] for r in csv.DictReader(io.StringIO(table(root, "voc2007-wang2019", "csv"))) if r["row"] == "reproduced"]
    assert sorted(sections) == ["deviations", "protocol"]
    assert table(root, "voc2007-wang2019", "tex").count("\\begin{tabular}") == 3  # and the provenance
    html = table(root, "voc2007-wang2019", "html")
    assert 'data-section="deviations"' in html and '<span class="badge deviation">deviation</span> epochs: 40 → 2' in html


def test_losses_never_merge_and_methods_are_named_beside_their_backbone(tmp_path, registry):
    root = tmp_path / "lb"
    runs = [
        make_run(tmp_path / "bce", seed=0, run_files=True),
        make_run(tmp_path / "asl", seed=0, loss="asl", run_files=True, score_seed=10),
        make_run(tmp_path / "asl", seed=1, loss="asl", run_files=True, score_seed=11),
        make_run(tmp_path / "csra", seed=0, model="csra", backbone="resnet101", run_files=True, score_seed=12),
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
    shown = sorted(tuple(r[1:6]) for r in protocol)
    assert shown == sorted([("resnet101", "baseline", "M1", "bce", "448"), ("resnet101", "csra", "M1", "bce", "448"),
                            ("resnet101", "baseline", "M2", "bce", "512"), ("resnet101", "baseline", "M3", "bce", "512"),
                            ("resnet101", "DistrEn", "M2+M3", "bce", "512")])
    (asl,) = deviating
    assert asl[1:6] == ["resnet101", "baseline", "M1", "asl", "448"] and asl[-2] == "2"
    assert asl[-1].startswith("loss: bce → asl")
    expected = np.mean([metric(runs[1], "map"), metric(runs[2], "map")])
    assert asl[8].startswith(f"{expected:.1f} ± ")
    assert [r["seeds"] for r in provenance_rows(text) if r["row"].startswith("resnet101 baseline M1 448 asl")] == ["0,1"]
    # a method row's difference to its same-backbone baseline (one seed each: no interval)
    delta = {r[2]: r[-2] for r in protocol}
    csra = metric(runs[3], "map") - metric(runs[0], "map")
    assert delta["csra"] == f"{csra:+.1f} vs M1 448" and delta["baseline"] == ""
    best = max(metric(m, "map") for m in members)
    best_aug = ("M2", "M3")[int(np.argmax([metric(m, "map") for m in members]))]
    fused = json.loads(next((tmp_path / "f").rglob("result.json")).read_text())["metrics"]["map"] * 100
    assert delta["DistrEn"] == f"{fused - best:+.1f} vs {best_aug} 512"


def test_every_format_escapes_what_it_must(tmp_path, registry):
    hostile = "=a|b\\c$d{e}f~g^h&i%j_k#l<m>n"
    injection = "<img src=x onerror=alert(1)>[click](https://evil.example)"
    root = tmp_path / "lb"
    submit(make_run(tmp_path / "r", model=hostile, backbone=injection, run_id="hostile", run_files=True), root, registry)
    build(root)
    md = table(root, "toy-wang2019")
    row = md_rows(md, render.SECTION_TITLES["protocol"])[1]
    assert len(row) == len(md_rows(md, render.SECTION_TITLES["protocol"])[0])  # no cell was split
    assert "=a\\|b\\\\c$d{e}f~g^h&i%j_k#l\\<m\\>n" in md
    assert "\\<img src=x onerror=alert(1)\\>\\[click\\](https://evil.example)" in md
    assert "<img" not in md.replace("\\<img", "") and "[click]" not in md
    tex = table(root, "toy-wang2019", "tex")
    assert ("=a\\textbar{}b\\textbackslash{}c\\$d\\{e\\}f\\textasciitilde{}g\\textasciicircum{}h\\&i\\%j\\_k\\#l"
            "\\textless{}m\\textgreater{}n") in tex
    main, provenance = tex.split("\\end{tabular}")[:2]
    assert all(line.count(" & ") + 1 == len(render.columns("protocol")) for line in main.splitlines() if line.endswith("\\\\"))
    assert all(line.count(" & ") + 1 == len(render.provenance_headers())
               for line in provenance.splitlines() if line.endswith("\\\\"))
    records = list(csv.reader(io.StringIO(table(root, "toy-wang2019", "csv"))))
    assert records[1][4:6] == [injection, "'" + hostile]  # backbone and method: a leading = is a formula
    html = table(root, "toy-wang2019", "html")
    assert "=a|b\\c$d{e}f~g^h&amp;i%j_k#l&lt;m&gt;n" in html and "<m>" not in html and "<img" not in html


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
    assert render.latex_escape("< > | 2×") == "\\textless{} \\textgreater{} \\textbar{} 2$\\times$"
    assert render.markdown_escape("a|b\\|c\nd") == "a\\|b\\\\\\|c d"
    assert render.markdown_escape("<b>[x](y)</b>") == "\\<b\\>\\[x\\](y)\\</b\\>"


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
    result = CliRunner().invoke(main, ["leaderboard", "build", "--leaderboards", str(root), "--baselines", str(BASELINES), "--check"])
    assert result.exit_code == 1 and f"stale: {root / 'tables' / 'toy-wang2019.md'} (changed)" in result.output
    assert "run `bench leaderboard build`" in result.output
    build(root)
    (root / "tables" / "notes.md").write_text("x")  # not generated by build: never reported, never removed
    manifest = root / "tables" / "generated-files.txt"
    manifest.write_text(manifest.read_text() + "old-table.md\n")  # a table an earlier build generated
    (root / "tables" / "old-table.md").write_text("x")
    result = CliRunner().invoke(main, ["leaderboard", "build", "--leaderboards", str(root), "--baselines", str(BASELINES), "--check"])
    assert result.output.splitlines()[0] == f"stale: {root / 'tables' / 'old-table.md'} (no longer generated)"
    result = CliRunner().invoke(main, ["leaderboard", "build", "--leaderboards", str(root), "--baselines", str(BASELINES), "--check", "--json"])
    assert json.loads(result.output.split("\nError")[0])["stale"] == [
        {"file": "tables/old-table.md", "reason": "no longer generated"},
        {"file": "tables/generated-files.txt", "reason": "changed"}]
    result = CliRunner().invoke(main, ["leaderboard", "build", "--leaderboards", str(root), "--baselines", str(BASELINES), "--json"])
    assert json.loads(result.output)["changed"][0] == {"file": "tables/old-table.md", "reason": "no longer generated"}
    assert not (root / "tables" / "old-table.md").exists() and "old-table" not in manifest.read_text()
    assert (root / "tables" / "notes.md").read_text() == "x"
    (root / "tables" / "notes.md").unlink()
    second = sorted(root.glob("submissions/toy/wang2019/*seed1--????????????.json"))[0]
    for path in (second, second.with_name(second.name[:-5] + ".scores.npz")):
        path.unlink()
    build(root)
    assert {p: p.read_bytes() for p in (root / "tables").iterdir()} == first


def maintainer_key(root: Path) -> Path:
    """A throwaway ed25519 key beside leaderboards folder ``root``, listed in its allowed_signers."""
    key = root.parent / "maintainer_key"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test", "-f", str(key)], check=True)
        public = key.with_name("maintainer_key.pub").read_text().split()[:2]
        (root / "allowed_signers").write_text(f"maintainer@test {' '.join(public)}\n")
    return key


def verify_by_hand(bundle: Bundle, **change) -> Path:
    """A verification file as reproduce writes it, with its hashes of the bundle's content, result
    and scores (build checks them; this test does not train), with ``change`` applied, signed by a
    maintainer's key listed in the leaderboards' allowed_signers."""
    root = bundle.path.parents[3]
    record = {"submission": bundle.id, "content_sha256": bundle.content_sha256, "result_sha256": sha256_json(bundle.result),
              "scores_sha256": bundle.scores_sha256, "verified": "2026-12-01T00:00:00+00:00", "outcome": "exact",
              "largest_difference": 0.0, "at": None, "tolerance": None, "harness_version": "0.2.0", "git_commit": None,
              "hardware": {"device": "cpu"}, "versions": {}, "seconds": 1.0, "code_changed": [], **change}
    record = sign_verification(record, maintainer_key(root), allowed_signers(root), "test")
    bundle.verification_path.write_text(json.dumps(record))
    return bundle.verification_path


def test_bundles_edited_after_submission_are_refused_at_build(tmp_path, registry):
    root = tmp_path / "lb"
    run = make_run(tmp_path / "r", seed=0, run_files=True)
    plugin = registry.plugins[-1]
    edit_json(run / "run.json", lambda r: r["plugins"].append(plugin_entry(plugin.path, "file", plugin.sha256)))
    stored = submit(run, root, registry)
    path = stored.path
    original = path.read_text()
    build(root)
    tables = {p: p.read_bytes() for p in (root / "tables").iterdir()}
    bundle = json.loads(original)
    bundle["result"]["train_images_per_s"] = 1e9  # a timing, outside the content hash and shown nowhere
    path.write_text(json.dumps(bundle))
    build(root)
    assert {p: p.read_bytes() for p in (root / "tables").iterdir()} == tables
    verification = verify_by_hand(stored)  # of the bundle as submitted: the edit makes it about something else
    build_refused(root, f"{verification}: result_sha256 {sha256_json(stored.result)[:16]}… is not that of {path.name} "
                        f"({sha256_json(bundle['result'])[:16]}…), so it verified something else; delete it and run "
                        "`bench leaderboard reproduce` again")
    verification.unlink()

    for change in (lambda b: b["result"].update(seed=7) or b["run"].update(seed=7),
                   lambda b: b.update(submitted_scores_sha256="0" * 64),
                   lambda b: b.update(canonical_fingerprint=b["result"]["dataset"]["fingerprint"])):
        bundle = json.loads(original)
        change(bundle)
        path.write_text(json.dumps(bundle))
        build_refused(root, f"{path}: its content no longer hashes to content_sha256 {stored.content_sha256[:12]}…; it "
                            "was edited after it was submitted: restore it from version control")
    bundle = json.loads(original)
    bundle["data"] = "canonical"
    path.write_text(json.dumps(bundle))
    build_refused(root, f"{path}: data is 'canonical', but its fingerprint and canonical_fingerprint make it "
                        "'non-canonical'; restore it from version control")
    bundle = json.loads(original)
    bundle["sources"] = []
    path.write_text(json.dumps(bundle))
    build_refused(root, f"{path}: sources are not the file and directory plugins its run names (file "
                        f"{stored.sources[0].sha256[:12]}…); restore it from version control")
    path.write_text(original)
    build(root)
    code = root / "submissions" / "plugins" / f"{stored.sources[0].sha256}.py"
    code.write_text(code.read_text() + "\nimport os  # a forger's addition\n")
    build_refused(root, f"{code}: missing, or not the code of sha256 {stored.sources[0].sha256[:12]}… its name says; "
                        "restore it from version control")


def test_a_dataset_s_canonical_fingerprint_is_the_one_this_harness_declares(tmp_path):
    root = tmp_path / "lb"
    stored = submit(make_run(tmp_path / "r", dataset="coco2014", run_files=True), root, Registry())
    assert (stored.data, stored.canonical_fingerprint) == ("non-canonical", None)
    fingerprint = stored.record.dataset.fingerprint
    forged = forge_bundle(stored.path, lambda b: b.update(data="canonical", canonical_fingerprint=fingerprint))
    build_refused(root, f"{forged}: canonical_fingerprint is {fingerprint!r}, but this harness declares None for dataset "
                        "'coco2014'; submit the run again")


def test_a_verification_counts_only_for_the_content_it_verified(tmp_path, registry):
    root = tmp_path / "lb"
    bundle = submit(make_run(tmp_path / "r", seed=0, run_files=True), root, registry)
    verify_by_hand(bundle)
    build(root)
    assert "| verified " in table(root, "toy-wang2019") and ",verified," in table(root, "toy-wang2019", "csv")
    assert '<span class="badge verified">verified</span>' in table(root, "toy-wang2019", "html")
    expected = {"content_sha256": bundle.content_sha256, "scores_sha256": bundle.scores_sha256,
                "result_sha256": sha256_json(bundle.result)}
    for name, forged in (("content_sha256", "0" * 64), ("scores_sha256", "1" * 64), ("result_sha256", "2" * 64)):
        path = verify_by_hand(bundle, **{name: forged})
        build_refused(root, f"{path}: {name} {forged[:16]}… is not that of {bundle.path.name} ({expected[name][:16]}…), "
                            "so it verified something else; delete it and run `bench leaderboard reproduce` again")
    path = verify_by_hand(bundle, outcome="trust me")
    build_refused(root, f"{path}: outcome 'trust me' is not one of exact, within tolerance; delete it and run "
                        "`bench leaderboard reproduce` again")
    assert len(stored_bundles(root)) == 1


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


def test_links_devices_pipes_and_oversized_files_under_submissions_are_refused(tmp_path, registry):
    root = tmp_path / "lb"
    stored = submit(make_run(tmp_path / "r", seed=0, run_files=True), root, registry)
    folder = stored.path.parent
    outside = tmp_path / "outside.json"
    outside.write_text(stored.path.read_text())
    for target in (outside, Path("/dev/zero")):
        link = folder / f"linked--{'a' * 12}.json"
        link.symlink_to(target)
        build_refused(root, f"{link}: a symbolic link under submissions/, which holds regular files and folders only: "
                            "replace the link with the file, or remove it")
        link.unlink()
    linked_folder = root / "submissions" / "elsewhere"
    linked_folder.symlink_to(tmp_path, target_is_directory=True)
    build_refused(root, f"{linked_folder}: a symbolic link under submissions/, which holds regular files and folders "
                        "only: replace the link with the file, or remove it")
    linked_folder.unlink()
    pipe = folder / f"piped--{'b' * 12}.json"
    os.mkfifo(pipe)
    build_refused(root, f"{pipe}: not a regular file (a device, pipe or socket) under submissions/; remove it")
    pipe.unlink()
    build(root)

    original = stored.path.read_bytes()
    for path, size, message in (
            (stored.path, 17 * 10**6, "17.0 MB, more than the 16.0 MB a stored submission may hold"),
            (stored.scores_path, 501 * 10**6, "501.0 MB, more than the 500.0 MB a stored scores file may hold"),
            (stored.verification_path, 2 * 10**6, "2.0 MB, more than the 1.0 MB a stored verification may hold")):
        kept = path.read_bytes() if path.exists() else None
        with open(path, "ab") as stream:
            stream.truncate(size)  # sparse: no disk used
        build_refused(root, f"{path}: {message}; restore it from version control")
        if kept is None:
            path.unlink()
        else:
            path.write_bytes(kept)
    assert stored.path.read_bytes() == original
    build(root)


def test_stored_files_that_are_not_what_they_claim_are_one_line(tmp_path, registry):
    root = tmp_path / "lb"
    stored = submit(make_run(tmp_path / "r", seed=0, run_files=True), root, registry)
    scores = stored.scores_path.read_bytes()
    with open(stored.scores_path, "wb") as stream:
        np.save(stream, np.zeros((60, 5), np.float32))  # a single .npy array under the .npz name
    build_refused(root, f"{stored.scores_path}: not an .npz archive (File is not a zip file); give the stored scores file "
                        "as written")
    np.savez(stored.scores_path.with_suffix(".tmp.npz"), score_planes=np.zeros((4, 5, 60), np.uint8),
             labels=np.zeros((60, 5), np.int8), ids=np.array([f"img{i}" for i in range(60)], dtype=object))
    stored.scores_path.with_suffix(".tmp.npz").replace(stored.scores_path)
    build_refused(root, f"{stored.scores_path}: holds Python objects, which are never loaded; a stored scores file holds "
                        "numbers and strings only: restore it from version control")
    stored.scores_path.write_bytes(scores)
    original = stored.path.read_text()
    deep = json.loads(original)
    deep["result"]["environment"]["nested"] = json.loads("[" * 70 + "]" * 70)
    stored.path.write_text(json.dumps(deep))
    build_refused(root, f"{stored.path}: nested more than 64 levels deep; not a record")
    stored.path.write_text(original[:-2] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    build_refused(root, f"{stored.path}: nested too deeply to be a record")
    stored.path.write_text(original.replace('"coverage": 1.0', '"coverage": NaN'))
    build_refused(root, f"{stored.path}: NaN is not a JSON number; numbers in a record are finite")
    stored.path.write_text(original)
    build(root)


def store_by_hand(root: Path, run_dir: Path, members: list[str]) -> Path:
    """Store a fused run folder as a bundle the way a forger's script would: no checks, but the
    harness's own layout and hashes."""
    from harness.leaderboard.bundle import arrays_sha256
    from harness.leaderboard.store import write_bundle
    from harness.leaderboard.packed_scores import LAYOUT, write_packed
    from harness.rundir import read_scores

    scores, labels, ids = read_scores(run_dir)
    record = json.loads((run_dir / "result.json").read_text())
    bundle = Bundle(id="", content_sha256="", submitted="2026-12-01T00:00:00+00:00", harness_version="0.2.0",
                    data="non-canonical", canonical_fingerprint=None, scores_layout=LAYOUT,
                    scores_sha256=arrays_sha256(scores, labels, ids), submitted_scores_sha256=sha256_of(run_dir / "scores.npz"),
                    result=record, run=None, log=None, members=members)
    bundle.content_sha256 = bundle.content()
    bundle.id = bundle.content_sha256[:12]
    bundle.path = (Path(root) / "submissions" / record["dataset"]["name"] / record["protocol"]["name"]
                   / f"{record['run_id']}--{bundle.id}.json")
    write_packed(bundle.scores_path, scores, labels, ids)
    write_bundle(bundle.path, bundle)
    return bundle.path


def test_a_hand_made_fusion_of_a_fusion_is_refused_at_build(tmp_path, registry):
    root = tmp_path / "lb"
    mean = Registry().get("fusion", "mean")
    members = [make_run(tmp_path / "m", aug="mixup", size=s, score_seed=s, run_files=True) for s in (384, 448, 512)]
    stored = [submit(run, root, registry) for run in members]
    fused = fuse_runs(members[:2], tmp_path / "f", mean, "ScaleEn").path
    fusion = submit(fused, root, registry)
    nested = fuse_runs([fused, members[2]], tmp_path / "n", mean, "Nested", run_id="nested").path
    forged = store_by_hand(root, nested, [fusion.id, stored[2].id])
    build_refused(root, f"{forged} (result): members[0] is the fusion submission {fusion.id}; a leaderboard fusion fuses "
                        "trained runs: fuse the trained runs behind it directly with `bench fuse`")
    forged.unlink()
    build(root)


def test_rows_never_merge_across_coverage_and_every_row_shows_its_fingerprint(tmp_path, registry):
    root = tmp_path / "lb"
    complete = make_run(tmp_path / "a", seed=0, run_files=True)
    partial = make_run(tmp_path / "b", seed=1, run_files=True)
    edit_json(partial / "result.json", lambda r: r["dataset"].update(coverage=0.9))  # relabelled as another subset
    for run in (complete, partial):
        submit(run, root, registry)
    build(root)
    rows = md_rows(table(root, "toy-wang2019"), render.SECTION_TITLES["protocol"])
    column = {name: rows[0].index(name) for name in rows[0]}
    fingerprint = json.loads((complete / "result.json").read_text())["dataset"]["fingerprint"][:8]
    assert len(rows) == 3 and "fingerprint" not in column  # provenance is listed below the table
    shown = sorted((r["seeds"], r["data"], r["fingerprint"]) for r in provenance_rows(table(root, "toy-wang2019")))
    assert shown == [("0", "non-canonical, coverage 100.0%", fingerprint), ("1", "non-canonical, coverage 90.0%", fingerprint)]
    assert "| toy, protocol wang2019 | 2 | 0 | 0 | 2 | " in table(root, "index")
    assert ('<a href="toy-wang2019.html">toy, protocol wang2019</a></td><td>2</td><td>0</td><td>0</td>'
            in table(root, "index", "html"))


def test_only_canonical_rows_are_compared_with_the_paper(tmp_path, voc):
    root = tmp_path / "lb"
    submit(make_run(tmp_path / "coco", dataset="coco2014", run_files=True), root, Registry())
    submit(make_run(tmp_path / "voc", dataset="voc2007", data=voc, run_files=True), root, Registry())
    build(root)
    remark = ("coco2014 declares no canonical fingerprint yet, so its reproduced rows are non-canonical (their data is "
              "not proven to be the complete official data) until it does; they get no difference (Δ) to the paper's rows.")
    coco = table(root, "coco2014-wang2019")
    sources = [r[6] for r in md_rows(coco, render.SECTION_TITLES["protocol"])]
    assert sources.count("reproduced") == 1 and "Δ reproduced − paper" not in sources
    assert coco.splitlines()[2].endswith(remark) and escape(remark) in table(root, "coco2014-wang2019", "html")
    voc_sources = [r[6] for r in md_rows(table(root, "voc2007-wang2019"), render.SECTION_TITLES["protocol"])]
    assert voc_sources.count("Δ reproduced − paper") == 1 and "declares no canonical" not in table(root, "voc2007-wang2019")


def test_build_never_follows_a_link_nor_removes_what_it_did_not_write(tmp_path, registry):
    root = tmp_path / "lb"
    submit(make_run(tmp_path / "r", seed=0, run_files=True), root, registry)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.md").write_text("someone's file")
    (root / "tables").symlink_to(elsewhere)
    for extra in ((), ("--check",)):
        build_refused_with = CliRunner().invoke(main, ["leaderboard", "build", "--leaderboards", str(root), "--baselines", str(BASELINES), *extra])
        assert build_refused_with.exit_code == 1 and build_refused_with.output == (
            f"Error: {root / 'tables'}: a symbolic link; build writes its output only into a real folder: replace the "
            "link with a folder\n")
    assert [p.name for p in elsewhere.iterdir()] == ["keep.md"]
    (root / "tables").unlink()

    build(root)
    target = root / "tables" / "toy-wang2019.md"
    target.unlink()
    target.symlink_to(elsewhere / "keep.md")
    build_refused(root, f"{target}: a symbolic link where build writes a generated file; remove it (build never writes "
                        "through a link)")
    assert (elsewhere / "keep.md").read_text() == "someone's file"
    target.unlink()

    manifest = root / "tables" / "generated-files.txt"
    build(root)
    listed = manifest.read_text()
    for entry in ("../README.md", "../submissions/toy/wang2019/x.json", "tables/x.md", "sub/x.md", ".hidden.md",
                  "/etc/passwd", "notes.txt"):
        manifest.write_text(listed + entry + "\n")
        build_refused(root, f"{manifest}: line {listed.count(chr(10)) + 1} {entry!r} is not <plain "
                            "name>.<md|csv|tex|html>; build removes only files it generated: restore the manifest from "
                            "version control")
    manifest.write_text(listed)
    build(root)
