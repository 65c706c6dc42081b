"""``bench leaderboard submit`` on synthetic run folders: what is stored, and every refusal.

The run folders come from ``runs.make_run(run_files=True)``: result.json, scores.npz,
run.json and log.json as the trainer writes them. Forgeries are made as an outsider would:
edit the JSON with ``json``, the arrays with numpy.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.data import compose, split_hash
from harness.errors import cut
from harness.fusion import fuse_runs
from harness.leaderboard import submit
from harness.leaderboard.bundle import ID_LENGTH, content_sha256, read_bundle
from harness.leaderboard.store import stored_bundles
from harness.leaderboard.packed_scores import read_packed
from harness.metrics import evaluate
from harness.naming import sha256_of
from harness.protocol import get_protocol
from harness.registry import Registry
from runs import make_run

TOY_PLUGIN = '''
from harness import Dataset, DatasetSpec, hookimpl

@hookimpl
def register_datasets(register):
    register(DatasetSpec(name="toy", load=lambda root, options: Dataset("toy", [], {})))
'''
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def toy_plugin(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("plugin") / "toy_plugin.py"
    path.write_text(TOY_PLUGIN)
    return str(path)


@pytest.fixture(scope="module")
def registry(toy_plugin) -> Registry:
    return Registry((toy_plugin,))


def voc_data() -> tuple[list[str], str, np.ndarray, np.ndarray]:
    """The complete official VOC2007 labels (tests/fixtures), so that the canonical fingerprint holds."""
    from plugins.datasets.voc2007 import CLASSES

    encode = np.vectorize({1: 1, -1: 0, 0: -1}.get)
    with np.load(FIXTURES / "voc2007_labels.npz", allow_pickle=False) as data:
        train = ([f"{i:06d}" for i in data["trainval_ids"]], encode(data["trainval_devkit"]).astype(np.int8))
        test_ids = np.asarray([f"{i:06d}" for i in data["test_ids"]])
        test_labels = encode(data["test_devkit"]).astype(np.int8)
    return list(CLASSES), split_hash(*train), test_ids, test_labels


def invoke(*args):
    return CliRunner().invoke(main, ["leaderboard", *map(str, args)])


def edit_json(path: Path, change) -> None:
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record, indent=2))


def copy_run(run_dir: Path, target: Path) -> Path:
    shutil.copytree(run_dir, target)
    return target


def rescore(run_dir: Path, scores=None, labels=None, ids=None) -> None:
    """Rewrite scores.npz with the arrays given and put the metrics they give into result.json."""
    with np.load(run_dir / "scores.npz") as data:
        arrays = {k: data[k] for k in data.files}
    for key, value in (("scores", scores), ("labels", labels), ("ids", ids)):
        if value is not None:
            arrays[key] = value
    np.savez_compressed(run_dir / "scores.npz", **arrays)
    metrics = json.loads(json.dumps(evaluate(arrays["scores"], arrays["labels"])))

    def change(record):
        record["metrics"] = metrics
        record["dataset"]["n_test"] = len(arrays["ids"])

    edit_json(run_dir / "result.json", change)


def refused(run_dir: Path, root: Path, plugin: str | None, *fragments: str) -> str:
    result = invoke("submit", run_dir, "--leaderboards", root, *(("--plugin", plugin) if plugin else ()))
    assert result.exit_code != 0, result.output
    line = result.output.strip()
    assert result.output.count("\n") == 1 and "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in line, line
    return line


def refused_with(run_dir: Path, root: Path, plugin: str | None, message: str) -> None:
    """The CLI refuses ``run_dir`` with exactly ``message``, as one line (cut as the CLI cuts)."""
    assert refused(run_dir, root, plugin) == f"Error: {cut(message)}"


def forge_bundle(path: Path, change) -> Path:
    """Edit a stored bundle as a forger who knows the format would: change its JSON, compute its
    content hash again with the harness's own function and rename its files to the new id."""
    data = json.loads(path.read_text())
    change(data)
    data["content_sha256"] = content_sha256(
        result=data["result"], run=data["run"], log=data["log"], scores_sha256=data["scores_sha256"],
        submitted_scores_sha256=data["submitted_scores_sha256"], canonical_fingerprint=data["canonical_fingerprint"])
    data["id"] = data["content_sha256"][:ID_LENGTH]
    forged = path.with_name(f"{data['result']['run_id']}--{data['id']}.json")
    path.with_name(path.name[:-len(".json")] + ".scores.npz").rename(forged.with_name(forged.name[:-len(".json")] + ".scores.npz"))
    path.unlink()
    forged.write_text(json.dumps(data, indent=2))
    return forged


def plugin_entry(value: str, source: str, sha256: str | None = None, distribution: str | None = None) -> dict:
    """One ``run.json`` plugins entry, as ``config.PluginSource`` stores it."""
    return {"value": value, "plugin": {"name": value, "source": source, "distribution": distribution,
                                       "distribution_version": "1.0" if distribution else None,
                                       "path": value if source in ("file", "directory") else None, "sha256": sha256}}


def test_accepted_run_is_stored_as_a_bundle_with_lossless_scores(tmp_path, toy_plugin, registry):
    run = make_run(tmp_path / "runs", run_files=True, epochs=3)
    root = tmp_path / "lb"
    result = invoke("submit", run, "--leaderboards", root, "--plugin", toy_plugin)
    assert result.exit_code == 0, result.output
    (path,) = (root / "submissions" / "toy" / "wang2019").glob("*--????????????.json")
    bundle = read_bundle(path)
    assert f"accepted as {bundle.id} (non-canonical data)" in result.output
    assert path.name == f"toy-resnet101-flip-448-wang2019-seed0--{bundle.id}.json"
    assert bundle.result == json.loads((run / "result.json").read_text())
    assert bundle.run == json.loads((run / "run.json").read_text())
    assert [e.to_dict() for e in bundle.log] == json.loads((run / "log.json").read_text())
    assert bundle.submitted_scores_sha256 == sha256_of(run / "scores.npz")
    scores, labels, ids = read_packed(bundle.scores_path)
    with np.load(run / "scores.npz") as original:
        assert scores.tobytes() == original["scores"].tobytes()
        assert np.array_equal(labels, original["labels"]) and ids.tolist() == original["ids"].tolist()
    assert bundle.result["protocol"]["deviations"] == {"epochs": {"protocol": 40, "used": 3}}


def test_voc2007_run_on_the_official_labels_is_canonical_and_relabelled_ones_are_refused(tmp_path, toy_plugin):
    data = voc_data()
    from plugins.datasets.voc2007 import VOC2007

    run = make_run(tmp_path / "runs", dataset="voc2007", run_files=True, data=data)
    assert json.loads((run / "result.json").read_text())["dataset"]["fingerprint"] == VOC2007.canonical_fingerprint
    root = tmp_path / "lb"
    bundle = submit(run, root, Registry())
    assert bundle.data == "canonical"
    forged = copy_run(make_run(tmp_path / "runs", dataset="voc2007", run_files=True, data=data, seed=1), tmp_path / "f")
    with np.load(forged / "scores.npz") as arrays:
        scores, labels = arrays["scores"], arrays["labels"].copy()
    labels[(labels == 1) & (scores < 0)] = -1  # missed positives become "difficult"
    rescore(forged, labels=labels)
    refused(forged, root, None, "scores.npz: its ids and labels", "not result.json's dataset.fingerprint")
    # a forger who also rewrites the fingerprint meets the canonical one
    classes, train_hash, ids, _ = data
    new = compose(classes, train_hash, split_hash(ids, labels))
    for name in ("result.json", "run.json"):
        edit_json(forged / name, lambda r: (r["dataset"].update(fingerprint=new) if "metrics" in r else r.update(fingerprint=new)))
    refused(forged, root, None, f"fingerprint {new}", "not its canonical")


def test_a_record_without_train_hash_is_refused(tmp_path, toy_plugin):
    run = make_run(tmp_path / "runs", run_files=True)
    edit_json(run / "result.json", lambda r: r["dataset"].update(train_hash=None))
    refused(run, tmp_path / "lb", toy_plugin, "result.json: dataset.train_hash is null", "cannot be proven")


@pytest.mark.parametrize(
    "change, fragments",
    [
        (lambda r: r["metrics"].update(map=r["metrics"]["map"] + 0.01), ("metrics.map is", "but re-scoring")),
        (lambda r: r["metrics"]["per_class_ap"].__setitem__(0, 1.0), ("metrics.per_class_ap is a list",)),
        (lambda r: r["protocol"].update(hash="0123456789abcdef"), ("protocol.hash 0123456789abcdef", "other rules")),
        (lambda r: r["protocol"].update(name="mine"), ("protocol.name 'mine' is unknown",)),
        (lambda r: r.pop("seed"), ("a train record needs 'seed'",)),
        (lambda r: r["dataset"].update(fingerprint=3), ("'dataset.fingerprint' is an integer, expected string",)),
        (lambda r: r.update(metrics_version=0), ("metrics_version 0",)),
        (lambda r: r.update(seed=5), ("result.json: seed is 5 but", "run.json has 0")),
        (lambda r: r["dataset"].update(name="a/b"), ("dataset.name 'a/b' is not a plain name",)),
    ],
)
def test_edited_results_are_refused_in_one_line_naming_file_and_field(tmp_path, toy_plugin, change, fragments):
    run = make_run(tmp_path / "runs", run_files=True)
    edit_json(run / "result.json", change)
    refused(run, tmp_path / "lb", toy_plugin, str(run), *fragments)
    assert not (tmp_path / "lb").exists()


def test_scores_files_must_have_the_format_s_dtypes_and_shapes(tmp_path, toy_plugin):
    run = make_run(tmp_path / "runs", run_files=True)
    with np.load(run / "scores.npz") as data:
        labels = data["labels"]
    rescore(run, labels=labels.astype(np.int64))
    refused(run, tmp_path / "lb", toy_plugin, "scores.npz: labels is int64 (60, 5), expected int8 of dataset.n_test 60")
    rescore(run, labels=labels)
    edit_json(run / "result.json", lambda r: r["dataset"].update(n_test=61))
    refused(run, tmp_path / "lb", toy_plugin, "scores.npz: scores is float32 (60, 5), expected float32 of dataset.n_test 61")


def test_deviations_must_be_those_of_run_json_and_the_log(tmp_path, toy_plugin):
    root = tmp_path / "lb"
    short = make_run(tmp_path / "runs", protocol="smoke", size=40, run_files=True, epochs=2)
    assert json.loads((short / "result.json").read_text())["protocol"]["deviations"] == {
        "epochs": {"protocol": 20, "used": 2}, "sizes": {"protocol": [32, 48, 64, 96, 128], "used": [40]}}

    deleted = copy_run(short, tmp_path / "deleted")
    edit_json(deleted / "result.json", lambda r: r["protocol"]["deviations"].pop("epochs"))
    refused(deleted, root, toy_plugin, "result.json: protocol.deviations.epochs is missing",
            "show 2 epoch(s) trained", "protocol 'smoke' has 20")

    invented = copy_run(short, tmp_path / "invented")
    edit_json(invented / "result.json", lambda r: r["protocol"]["deviations"].update(batch_size={"protocol": 32, "used": 8}))
    refused(invented, root, toy_plugin, "protocol.deviations.batch_size is recorded", "no such deviation")

    fewer_epochs_logged = copy_run(short, tmp_path / "log")
    edit_json(fewer_epochs_logged / "log.json", lambda log: log.pop())
    refused(fewer_epochs_logged, root, toy_plugin, "log.json: 1 epoch(s) logged", "epochs 2")

    faster = copy_run(make_run(tmp_path / "runs", protocol="smoke", run_files=True, epochs=17, seed=3), tmp_path / "lr")
    edit_json(faster / "log.json", lambda log: log[16]["lr"].update(head=0.05))
    refused(faster, root, toy_plugin, "log.json: epoch 16 lr is", "schedules head 0.005")

    unpublished = copy_run(make_run(tmp_path / "runs", run_files=True, seed=4), tmp_path / "weights")
    edit_json(unpublished / "result.json", lambda r: r["model"]["pretrained"]["files"][0].update(sha256="f" * 64))
    refused(unpublished, root, toy_plugin, "protocol.deviations.init is missing", "init 'file'")
    assert not root.exists()


def test_forged_names_never_become_paths_and_nothing_is_written_outside(tmp_path, toy_plugin):
    outside = tmp_path / "outside"
    root = outside / "lb"
    run = make_run(tmp_path / "runs", run_files=True)
    for index, bad in enumerate(("../../../../x", str(tmp_path / "abs"), ".hidden")):
        forged = copy_run(run, tmp_path / f"forged{index}")
        for name in ("result.json", "run.json"):
            edit_json(forged / name, lambda r: r.update(run_id=bad))
        refused(forged, root, toy_plugin, f"result.json: run_id {bad!r} is not a plain name")
    assert invoke("submit", run, "--leaderboards", root, "--plugin", toy_plugin).exit_code == 0
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert all(p.startswith(("outside/lb/submissions/", "outside/lb/checked-bundles.json", "runs/", "forged"))
               for p in written), written
    assert not (tmp_path / "x").exists() and not (tmp_path / "abs").exists()


def test_a_stored_content_is_refused_whatever_its_timestamps_or_formatting(tmp_path, toy_plugin):
    root = tmp_path / "lb"
    run = make_run(tmp_path / "runs", run_files=True)
    stored = submit(run, root, Registry((toy_plugin,)))
    later = copy_run(run, tmp_path / "later")
    edit_json(later / "result.json", lambda r: r.update(created="2030-01-01T00:00:00+00:00", wall_time_s=1.5))
    refused(later, root, toy_plugin, f"already stored as submission {stored.id}", "only timestamps or formatting differ")
    reformatted = copy_run(run, tmp_path / "reformatted")
    for name in ("result.json", "run.json", "log.json"):
        text = json.dumps(json.loads((reformatted / name).read_text()), indent=7, sort_keys=True)
        (reformatted / name).write_text(text + "  \n\n")
    refused(reformatted, root, toy_plugin, "already stored as")
    assert len(stored_bundles(root)) == 1


def test_a_second_run_of_a_stored_seed_is_refused(tmp_path, toy_plugin):
    root = tmp_path / "lb"
    first = make_run(tmp_path / "a", run_files=True, seed=0)
    again = make_run(tmp_path / "b", run_files=True, seed=0, score_seed=99)  # same configuration and seed, other scores
    other_seed = make_run(tmp_path / "c", run_files=True, seed=1)
    other_loss = make_run(tmp_path / "d", run_files=True, seed=0, loss="asl", score_seed=7)
    submit(first, root, Registry((toy_plugin,)))
    refused(again, root, toy_plugin, "seed 0 of this configuration is already stored", "train with another --seed")
    for run in (other_seed, other_loss):
        assert invoke("submit", run, "--leaderboards", root, "--plugin", toy_plugin).exit_code == 0
    assert len(stored_bundles(root)) == 3


def cpu_ticks(pid: int) -> int:
    """The CPU time a process has used (utime + stime, fields 14 and 15 of /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def until_idle(processes: list[subprocess.Popen], timeout: float = 90.0) -> None:
    """Wait until every process has used under 50 ms of CPU in a second (each polls a lock) or one ended."""
    deadline = time.monotonic() + timeout
    before = [cpu_ticks(p.pid) for p in processes]
    while time.monotonic() < deadline and all(p.poll() is None for p in processes):
        time.sleep(1.0)
        now = [cpu_ticks(p.pid) for p in processes]
        if all(after - earlier < os.sysconf("SC_CLK_TCK") // 20 for earlier, after in zip(before, now)):
            return
        before = now


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs /proc to see processes wait")
def test_concurrent_submissions_from_processes_wait_for_the_lock_and_a_duplicate_lands_once(tmp_path, toy_plugin):
    from filelock import FileLock

    runs = [make_run(tmp_path / "runs", seed=seed, run_files=True) for seed in range(4)]
    root = tmp_path / "lb"
    (root / "submissions").mkdir(parents=True)
    with FileLock(str(root / "submissions" / ".lock")):
        processes = [subprocess.Popen([sys.executable, "-m", "harness", "leaderboard", "submit", str(run), "--leaderboards",
                                       str(root), "--plugin", toy_plugin], stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True) for run in runs + [runs[0]]]
        until_idle(processes)
        assert all(p.poll() is None for p in processes), "a submission did not wait for the lock another process held"
        assert not list(root.glob("submissions/*/*/*"))
    outcomes = [process.communicate(timeout=120)[0] for process in processes]
    folder = root / "submissions" / "toy" / "wang2019"
    assert len(list(folder.glob("*--????????????.json"))) == 4 and len(list(folder.glob("*.scores.npz"))) == 4
    assert sum(o.startswith("accepted as ") for o in outcomes) == 4, outcomes
    (duplicate,) = [o for o in outcomes if not o.startswith("accepted as ")]
    assert duplicate.count("\n") == 1 and "result.json: already stored as submission" in duplicate, duplicate
    assert sorted(p.returncode for p in processes) == [0, 0, 0, 0, 1]
    assert not list(folder.glob(".*"))


def test_a_fusion_needs_its_members_stored_and_must_be_their_fusion(tmp_path, toy_plugin, registry):
    root = tmp_path / "lb"
    members = [make_run(tmp_path / "runs", aug="mixup", size=s, score_seed=s, run_files=True) for s in (384, 448, 512)]
    fused = fuse_runs(members, tmp_path / "fused", Registry().get("fusion", "mean"), "ScaleEn").path
    refused(fused, root, toy_plugin, "members[0]", "is not a stored submission; submit every member run first")
    for run in members:
        submit(run, root, registry)
    forged = copy_run(fused, tmp_path / "forged")
    with np.load(forged / "scores.npz") as data:
        scores = data["scores"] + np.float32(0.5) * (data["labels"] == 1)
    rescore(forged, scores=scores)
    refused(forged, root, toy_plugin, "scores are not fusion 'mean' of the stored members' scores")
    bundle = submit(fused, root, registry)
    by_size = {b.record.size: b.id for b in stored_bundles(root) if b.record.kind == "train"}
    assert bundle.members == [by_size[384], by_size[448], by_size[512]]


def test_a_bundle_is_named_by_the_first_id_length_digits_of_its_content(tmp_path, registry):
    bundle = submit(make_run(tmp_path / "runs", run_files=True), tmp_path / "lb", registry)
    assert len(bundle.id) == ID_LENGTH and bundle.content_sha256.startswith(bundle.id)
    assert bundle.path.name.endswith(f"--{bundle.id}.json") and bundle.content() == bundle.content_sha256


@pytest.mark.parametrize(
    "source, value",
    [("module", "/tmp/outside/evil.py"), ("distribution", "evil.py"), ("built-in", "../plugins/evil"),
     ("module", "evil plugin")],
)
def test_a_plugin_that_is_not_a_file_or_folder_must_be_named_not_pathed(tmp_path, toy_plugin, source, value):
    run = make_run(tmp_path / "runs", run_files=True)
    edit_json(run / "run.json", lambda r: r["plugins"].append(plugin_entry(value, source, distribution="evil")))
    refused_with(run, tmp_path / "lb", toy_plugin,
                 f"{run / 'run.json'}: plugins[0].value {value!r} is not a module or entry-point name (dotted "
                 f"identifiers), but its source is {source!r}; a path is only ever a file or directory plugin, whose "
                 "code a submission stores: submit the run folder as the harness wrote it")
    assert not (tmp_path / "lb").exists()


def test_a_file_plugin_must_still_hold_the_code_the_run_recorded(tmp_path, toy_plugin):
    code = tmp_path / "plugin.cfg"  # a file plugin needs no .py suffix
    code.write_text("x = 1\n")
    recorded = sha256_of(code)
    run = make_run(tmp_path / "runs", run_files=True)
    edit_json(run / "run.json", lambda r: r["plugins"].append(plugin_entry(str(code), "file", recorded)))
    code.write_text("x = 2\n")
    refused_with(run, tmp_path / "lb", toy_plugin,
                 f"{run / 'run.json'}: file plugin {code} now has sha256 {sha256_of(code)[:12]}…, but the run recorded "
                 f"sha256 {recorded[:12]}…; the submission must carry the code the run used: restore it")
    code.unlink()
    code.mkdir()
    refused(run, tmp_path / "lb", toy_plugin, f"file plugin {code} is no longer a file, but the run recorded")
    code.rmdir()
    refused(run, tmp_path / "lb", toy_plugin, f"file plugin {code} is gone, but the run recorded")


def test_records_out_of_range_or_not_finite_are_refused(tmp_path, toy_plugin):
    root = tmp_path / "lb"
    run = make_run(tmp_path / "runs", run_files=True)
    cases = [
        ("result.json", lambda r: r["dataset"].update(coverage=1.5),
         "result.json: dataset.coverage is 1.5; a coverage is the fraction of the dataset's images found, from 0 to 1"),
        ("result.json", lambda r: r["dataset"].update(n_train=-3),
         "result.json: dataset.n_train is -3; a count of images is never negative"),
        ("result.json", lambda r: r.update(train_images_per_s=-100.0),
         "result.json: train_images_per_s is -100.0; a time or a speed is never negative"),
        ("log.json", lambda log: log[0].update(seconds=-1.0),
         "log.json: entry 0 seconds is -1.0; a time or a speed is never negative"),
    ]
    for index, (name, change, message) in enumerate(cases):
        forged = copy_run(run, tmp_path / f"forged{index}")
        edit_json(forged / name, change)
        refused_with(forged, root, toy_plugin, f"{forged}/{message}")
    for index, (name, text) in enumerate((("result.json", '"coverage": NaN'), ("log.json", '"loss": Infinity'))):
        forged = copy_run(run, tmp_path / f"constant{index}")
        key = text.split(":")[0]
        lines = [f"{line.split(':')[0]}: {text.split(': ')[1]}," if line.strip().startswith(key) else line
                 for line in (forged / name).read_text().splitlines()]
        (forged / name).write_text("\n".join(lines))
        constant = text.split(": ")[1]
        suffix = "" if name == "result.json" else "; the log is corrupt"
        refused_with(forged, root, toy_plugin,
                     f"{forged / name}: {constant} is not a JSON number; numbers in a record are finite{suffix}")
    assert not root.exists()


def test_the_result_must_agree_with_run_json_on_every_setting_both_record(tmp_path, toy_plugin):
    root = tmp_path / "lb"
    run = make_run(tmp_path / "runs", run_files=True)
    cases = [
        ("result.json", lambda r: r["dataset"].update(name="voc2007"),
         "result.json: dataset.name is 'voc2007' but run.json trained dataset 'toy'; a leaderboard files a run under "
         "the dataset it trained (a plugin's Dataset carries the name it is registered under)"),
        ("result.json", lambda r: r.update(device="cuda:0", gpu="NVIDIA H200"),
         "result.json: device type is 'cuda' but run.json has 'cpu'; submit the run folder as the harness wrote it"),
        ("run.json", lambda r: r.update(precision="bf16"),
         "result.json: precision is 'fp32' but run.json has 'bf16'; submit the run folder as the harness wrote it"),
        ("run.json", lambda r: r.update(pretrained="/weights/mine.pth"),
         "result.json: model.pretrained.mode is 'imagenet' but run.json has 'file'; submit the run folder as the "
         "harness wrote it"),
    ]
    for index, (name, change, message) in enumerate(cases):
        forged = copy_run(run, tmp_path / f"forged{index}")
        edit_json(forged / name, change)
        refused_with(forged, root, toy_plugin, f"{forged}/{message}")
    other_file = copy_run(run, tmp_path / "weights")
    edit_json(other_file / "run.json", lambda r: r.update(pretrained="/weights/mine.pth"))
    edit_json(other_file / "result.json", lambda r: r["model"]["pretrained"].update(mode="file"))
    refused_with(other_file, root, toy_plugin,
                 f"{other_file}/result.json: model.pretrained.files[0].file is '/hub/resnet101-63fe2227.pth' but run.json "
                 "has '/weights/mine.pth'; submit the run folder as the harness wrote it")


def test_protocol_and_fingerprint_refusals_say_which_file_disagrees_with_which(tmp_path, toy_plugin):
    root = tmp_path / "lb"
    run = make_run(tmp_path / "runs", run_files=True)
    rules, smoke = get_protocol("wang2019"), get_protocol("smoke")
    version = copy_run(run, tmp_path / "version")
    edit_json(version / "result.json", lambda r: r["protocol"].update(version=rules.version + 5))
    refused_with(version, root, toy_plugin,
                 f"{version}/result.json: protocol.version is {rules.version + 5}, but protocol 'wang2019' of hash "
                 f"{rules.hash} is version {rules.version}; submit the run folder as the harness wrote it")
    borrowed = copy_run(run, tmp_path / "borrowed")
    edit_json(borrowed / "result.json", lambda r: r["protocol"].update(hash=smoke.hash))
    refused_with(borrowed, root, toy_plugin,
                 f"{borrowed}/result.json: protocol.hash {smoke.hash} is the hash of protocol 'smoke', not of "
                 "'wang2019'; the run followed other rules")
    train_hash = copy_run(run, tmp_path / "train_hash")
    edit_json(train_hash / "result.json", lambda r: r["dataset"].update(train_hash="2" * 64))
    record = json.loads((train_hash / "result.json").read_text())
    with np.load(train_hash / "scores.npz") as data:
        composed = compose(record["dataset"]["classes"], "2" * 64, split_hash(data["ids"], data["labels"]))
    refused_with(train_hash, root, toy_plugin,
                 f"{train_hash}/scores.npz: its ids and labels with result.json's dataset.classes and dataset.train_hash "
                 f"give fingerprint {composed}, not result.json's dataset.fingerprint {record['dataset']['fingerprint']}; "
                 "scores.npz and result.json disagree: the test split in one, or the classes or train hash in the "
                 "other, changed after the run")


def test_one_run_relabelled_with_another_seed_is_refused_by_its_scores(tmp_path, toy_plugin, registry):
    root = tmp_path / "lb"
    run = make_run(tmp_path / "runs", run_files=True, seed=0)
    stored = submit(run, root, registry)
    reseeded = copy_run(run, tmp_path / "reseeded")
    for name in ("result.json", "run.json"):
        edit_json(reseeded / name, lambda r: r.update(seed=5))
    refused_with(reseeded, root, toy_plugin,
                 f"{reseeded}/scores.npz: its scores, labels and ids are those of stored submission {stored.id} (seed 0); "
                 "one run relabelled with another seed or setting is still one run")
    assert len(stored_bundles(root)) == 1


def test_a_fusion_s_members_are_different_trained_runs_described_as_stored(tmp_path, toy_plugin, registry):
    root = tmp_path / "lb"
    members = [make_run(tmp_path / "runs", aug="mixup", size=s, score_seed=s, run_files=True) for s in (384, 448, 512)]
    stored = [submit(run, root, registry) for run in members]
    mean = Registry().get("fusion", "mean")
    fused = fuse_runs(members[:2], tmp_path / "fused", mean, "ScaleEn").path
    fusion = submit(fused, root, registry)

    nested = fuse_runs([fused, members[2]], tmp_path / "nested", mean, "Nested").path
    refused_with(nested, root, toy_plugin,
                 f"{nested}/result.json: members[0] is the fusion submission {fusion.id}; a leaderboard fusion fuses "
                 "trained runs: fuse the trained runs behind it directly with `bench fuse`")

    twice = fuse_runs([members[0], copy_run(members[0], tmp_path / "copy" / members[0].name)], tmp_path / "twice", mean,
                      "Twice", run_id="twice").path
    refused_with(twice, root, toy_plugin,
                 f"{twice}/result.json: members[1] is members[0] again (submission {stored[0].id}); each member of a "
                 "fusion is a different run")

    other = fuse_runs(members[1:], tmp_path / "other", mean, "ScaleEn").path
    reseeded = copy_run(other, tmp_path / "reseeded")
    edit_json(reseeded / "result.json", lambda r: r["members"][1].update(seed=5))
    refused_with(reseeded, root, toy_plugin,
                 f"{reseeded}/result.json: members[1].seed is 5, but member submission {stored[2].id} has 0")
    resized = copy_run(other, tmp_path / "resized")
    edit_json(resized / "result.json", lambda r: r.update(size=448))
    refused_with(resized, root, toy_plugin,
                 f"{resized}/result.json: size is 448, but its members differ in it; a fused record holds what every "
                 "member shares, else null")
    rebacked = copy_run(other, tmp_path / "rebacked")
    edit_json(rebacked / "result.json", lambda r: r["model"].update(backbone="vit-huge"))
    refused_with(rebacked, root, toy_plugin,
                 f"{rebacked}/result.json: model.backbone is 'vit-huge', but its members share None; a fused record "
                 "holds what every member shares, else null")
    renamed = copy_run(other, tmp_path / "renamed")
    edit_json(renamed / "result.json", lambda r: r["dataset"].update(n_train=10**6))
    refused_with(renamed, root, toy_plugin,
                 f"{renamed}/result.json: dataset.n_train is 1000000, but member {stored[1].id}, whose dataset a fusion "
                 "records, has 100")
    assert submit(other, root, registry).members == [stored[1].id, stored[2].id]
