"""Runs that survive faults and never hurt the user, tried with real processes and real files.

Every case here ends in one line naming the culprit (and a non-zero exit), or in a run that
carries on correctly: resume runs nothing it did not write, a killed --overwrite loses
nothing, budgets refuse before any work, and plugin failures of every kind are named.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_PLUGIN

pytestmark = pytest.mark.slow
RUN_ID = "r"


def bench(*args, cwd=None, env=None, timeout=300):
    """``bench ARGS`` as a real process; returns the CompletedProcess."""
    command = [sys.executable, "-m", "harness", *map(str, args)]
    environment = dict(os.environ, **(env or {}))
    environment["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    return subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=timeout)


def run_args(data_root, out, *extra, plugin=TINY_PLUGIN, aug="recording-flip", epochs=3):
    return ["run", "--plugin", plugin, "--dataset", "tiny", "--data-root", data_root, "--model", "tiny-cnn",
            "--aug", aug, "--protocol", "smoke", "--size", "32", "--epochs", epochs, "--device", "cpu",
            "--out", out, "--run-id", RUN_ID, "--quiet", *extra]


def one_error_line(result) -> str:
    """The command's whole stderr, which must be exactly one ``Error:`` line of at most 300 characters."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert len(lines[0]) <= 300 + len("Error: ") and "Traceback" not in result.stderr
    return lines[0]


def killed_run(data_root, out, *extra, **options) -> Path:
    """A run SIGKILLed during its third epoch: a checkpoint after two epochs, no result."""
    result = bench(*run_args(data_root, out, *extra, **options), env={"TINY_KILL_AT_EPOCH": "2"})
    assert result.returncode == -9, result.stderr
    assert (Path(out) / RUN_ID / "checkpoint.pt").is_file()
    return Path(out) / RUN_ID


@pytest.fixture(scope="module")
def reference(tiny_root, tmp_path_factory):
    """An uninterrupted run's scores."""
    out = tmp_path_factory.mktemp("reference")
    result = bench(*run_args(tiny_root, out))
    assert result.returncode == 0, result.stderr
    return np.load(out / RUN_ID / "scores.npz")["scores"]


def test_a_planted_checkpoint_is_not_executed_on_resume(tiny_root, tmp_path):
    run_dir = killed_run(tiny_root, tmp_path / "runs")
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"epoch": Payload(), "model": {}}, run_dir / "checkpoint.pt")
    refused = bench("run", "--resume", run_dir, "--plugin", TINY_PLUGIN)
    assert refused.returncode == 1
    line = one_error_line(refused)
    assert "checkpoint.pt" in line and "not loaded" in line and "--overwrite" in line
    assert "unsupported global" in line.lower() and "system" in line  # the reason is the object refused, not torch's advice
    assert not marker.exists()


def test_a_corrupt_checkpoint_or_run_file_is_one_line_naming_it(tiny_root, tmp_path):
    run_dir = killed_run(tiny_root, tmp_path / "runs")
    (run_dir / "checkpoint.pt").write_bytes(b"\x00garbage" * 100)
    line = one_error_line(bench("run", "--resume", run_dir, "--plugin", TINY_PLUGIN))
    assert str(run_dir / "checkpoint.pt") in line
    (run_dir / "run.json").write_text('{"dataset": ')
    line = one_error_line(bench("run", "--resume", run_dir, "--plugin", TINY_PLUGIN))
    assert str(run_dir / "run.json") in line and "not valid JSON" in line
    (run_dir / "run.json").write_text(json.dumps({"dataset": "tiny"}))
    line = one_error_line(bench("run", "--resume", run_dir, "--plugin", TINY_PLUGIN))
    assert str(run_dir / "run.json") in line and "required key" in line


def relabel_first_test_image(labels_csv: Path) -> None:
    """Flip the first class of the first test image in a ``tiny`` dataset's labels.csv."""
    rows = [line.split(",") for line in labels_csv.read_text().splitlines()]
    row = next(r for r in rows if r[0] == "test")
    row[2] = "0" if row[2] == "1" else "1"
    labels_csv.write_text("".join(",".join(r) + "\n" for r in rows))


def test_resume_from_another_directory_uses_the_runs_own_data_or_refuses(tiny_root, tmp_path, reference):
    first, second = tmp_path / "first", tmp_path / "second"
    shutil.copytree(tiny_root, first / "data")
    shutil.copytree(tiny_root, second / "data")
    relabel_first_test_image(second / "data" / "labels.csv")  # other data at the same relative path
    result = bench(*run_args("data", tmp_path / "runs"), cwd=first, env={"TINY_KILL_AT_EPOCH": "2"})
    assert result.returncode == -9, result.stderr
    run_dir = tmp_path / "runs" / RUN_ID
    stored = json.loads((run_dir / "run.json").read_text())
    assert stored["data_root"] == str((first / "data").resolve()) and stored["fingerprint"]
    original = (first / "data" / "labels.csv").read_text()
    relabel_first_test_image(first / "data" / "labels.csv")  # the run's own data changed under it
    line = one_error_line(bench("run", "--resume", run_dir, "--plugin", TINY_PLUGIN, cwd=second))
    assert stored["fingerprint"] in line and "has fingerprint" in line and "--data-root" in line
    (first / "data" / "labels.csv").write_text(original)
    resumed = bench("run", "--resume", run_dir, "--plugin", TINY_PLUGIN, "--quiet", cwd=second)
    assert resumed.returncode == 0, resumed.stderr
    assert np.array_equal(np.load(run_dir / "scores.npz")["scores"], reference)


def test_a_changed_plugin_file_is_refused_on_resume(tiny_root, tmp_path):
    plugin = tmp_path / "tiny_copy.py"
    shutil.copy(TINY_PLUGIN, plugin)
    run_dir = killed_run(tiny_root, tmp_path / "runs", plugin=plugin)
    plugin.write_text(plugin.read_text() + "\nimport os  # edited after the run started\n")
    line = one_error_line(bench("run", "--resume", run_dir, "--plugin", plugin))
    assert str(plugin) in line and "sha256" in line and "restore that file" in line
    assert not (run_dir / "result.json").exists()


def test_a_killed_overwrite_leaves_the_old_run_and_the_users_files(tiny_root, tmp_path):
    out = tmp_path / "runs"
    finished = bench(*run_args(tiny_root, out, epochs=2))
    assert finished.returncode == 0, finished.stderr
    run_dir = out / RUN_ID
    old_result = (run_dir / "result.json").read_bytes()
    (run_dir / "notes.txt").write_text("my notes")
    killed = bench(*run_args(tiny_root, out, "--overwrite"), env={"TINY_KILL_AT_EPOCH": "2"})
    assert killed.returncode == -9, killed.stderr
    assert (run_dir / "result.json").read_bytes() == old_result
    assert (run_dir / "notes.txt").read_text() == "my notes"
    replaced = bench(*run_args(tiny_root, out, "--overwrite"))
    assert replaced.returncode == 0, replaced.stderr
    assert (run_dir / "result.json").read_bytes() != old_result
    assert json.loads((run_dir / "result.json").read_text())["protocol"]["deviations"]["epochs"]["used"] == 3
    assert (run_dir / "notes.txt").read_text() == "my notes"
    assert sorted(p.name for p in out.iterdir() if not p.name.endswith(".lock")) == [RUN_ID]


def test_a_run_id_that_is_not_a_plain_name_deletes_nothing(tiny_root, tmp_path):
    out = tmp_path / "runs"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    for run_id in (".", "..", "../x", "/tmp/x", ".hidden"):
        args = [a if a != RUN_ID else run_id for a in run_args(tiny_root, out, "--overwrite")]
        line = one_error_line(bench(*args))
        assert "--run-id" in line and "not a plain name" in line
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"


PLUGIN_FAULTS = {
    "exit-in-build": ("def build(num_classes, pretrained):\n    sys.exit(0)\n", "build called sys.exit(0)"),
    "exit-at-import": ("sys.exit(0)\ndef build(num_classes, pretrained):\n    pass\n", "called sys.exit(0) at import"),
    "huge-message": ("def build(num_classes, pretrained):\n    raise ValueError('x' * 5_000_000)\n", "build raised ValueError: xxx"),
    "train-mode-shape": (textwrap.dedent('''
        import torch
        class Odd(torch.nn.Module):
            def __init__(self, c):
                super().__init__()
                self.features = torch.nn.Conv2d(3, 4, 3)
                self.head = torch.nn.Linear(4, c + 1)
                self.c = c
            def forward(self, x):
                out = self.head(self.features(x).mean(dim=(2, 3)))
                return out if self.training else out[:, :self.c]
        def build(num_classes, pretrained):
            return Odd(num_classes)
        '''), "returned (2, 11) in train mode"),
}


@pytest.mark.parametrize("fault", list(PLUGIN_FAULTS))
def test_plugin_failures_of_every_kind_end_in_one_line_naming_the_plugin(tiny_root, tmp_path, fault):
    body, expected = PLUGIN_FAULTS[fault]
    plugin = tmp_path / f"{fault.replace('-', '_')}.py"
    plugin.write_text("import sys\nfrom harness import ModelSpec, hookimpl\n" + body + textwrap.dedent('''
        @hookimpl
        def register_models(register):
            register(ModelSpec(name="faulty", build=build, head_prefixes=("head",)))
        '''))
    started = time.monotonic()
    result = bench("run", "--plugin", TINY_PLUGIN, "--plugin", plugin, "--dataset", "tiny", "--data-root", tiny_root,
                   "--model", "faulty", "--size", "32", "--epochs", "1", "--device", "cpu", "--out", tmp_path / "runs")
    assert result.returncode != 0
    line = one_error_line(result)
    assert expected in line and str(plugin) in line
    assert time.monotonic() - started < 60


NAN_LOSS = '''
import torch
import torch.nn.functional as F

from harness import LossSpec, hookimpl

CALLS = []


def sometimes_nan(logits, targets):
    if logits.dtype == torch.float32 and logits.requires_grad and logits.shape[0] == 32:
        CALLS.append(1)
        if len(CALLS) == 2:
            return logits.sum() * float("nan")
    return F.binary_cross_entropy_with_logits(logits, targets)


@hookimpl
def register_losses(register):
    register(LossSpec(name="nan-at-step-2", loss=sometimes_nan))
'''


def test_a_non_finite_loss_stops_the_run_at_its_step(tiny_root, tmp_path):
    plugin = tmp_path / "nan_loss.py"
    plugin.write_text(NAN_LOSS)
    result = bench("run", "--plugin", TINY_PLUGIN, "--plugin", plugin, "--dataset", "tiny", "--data-root", tiny_root,
                   "--model", "tiny-cnn", "--loss", "nan-at-step-2", "--size", "32", "--epochs", "3", "--device", "cpu",
                   "--out", tmp_path / "runs")
    line = one_error_line(result)
    assert "model 'tiny-cnn'" in line and "NaN or infinite at epoch 1, step 2" in line
    assert not list((tmp_path / "runs").glob("*/log.json")) and not list((tmp_path / "runs").glob("*/result.json"))


def test_options_beyond_their_bounds_are_refused_before_any_work(tmp_path):
    for option, value, reason in (("--size", 100000, "the largest allowed is 4096"),
                                  ("--seed", 99999999999, "seeds are 32-bit"),
                                  ("--epochs", 0, "the smallest allowed is 1")):
        started = time.monotonic()
        result = bench("run", option, value, "--out", tmp_path / "runs")
        line = one_error_line(result)
        assert f"{option} {value}" in line and reason in line
        assert time.monotonic() - started < 30
    result = bench("run", "--size", 4096, "--batch-size", 4096, "--out", tmp_path / "runs")
    line = one_error_line(result)
    assert "needs at least" in line and "memory per batch" in line and "available" in line
    assert not (tmp_path / "runs").exists()


def test_a_data_root_for_a_generated_dataset_is_an_error(tmp_path):
    line = one_error_line(bench("run", "--data-root", tmp_path, "--out", tmp_path / "runs"))
    assert "dataset 'shapes' takes no --data-root" in line


def test_a_truncated_first_image_names_its_file(tiny_root, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_root, data)
    broken = data / "train000.png"
    broken.write_bytes(broken.read_bytes()[:60])
    line = one_error_line(bench(*run_args(data, tmp_path / "runs", aug="flip")))
    assert str(broken) in line and "bench data verify" in line


def test_weights_of_another_architecture_name_the_file(tiny_root, tmp_path):
    import torchvision

    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), checkpoints / "resnet18-f37072fd.pth")
    result = bench("run", "--plugin", TINY_PLUGIN, "--dataset", "tiny", "--data-root", tiny_root, "--model", "resnet18",
                   "--pretrained", "imagenet", "--size", "32", "--epochs", "1", "--device", "cpu",
                   "--out", tmp_path / "runs", env={"TORCH_HOME": str(tmp_path / "torch")})
    line = one_error_line(result)
    assert str(checkpoints / "resnet18-f37072fd.pth") in line and "is it the file for this architecture?" in line


def test_a_full_output_disk_is_one_line(tiny_root, tmp_path):
    out = tmp_path / "full"
    out.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(out)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.decode().strip()}); needs root")
    try:
        with open(out / "filler", "wb") as stream:
            stream.write(b"\0" * (256 * 1024 - 8 * 1024))
        line = one_error_line(bench(*run_args(tiny_root, out, aug="flip", epochs=1)))
        assert "no space left" in line and str(out) in line
    finally:
        subprocess.run(["umount", str(out)], check=True)


def test_a_plugin_without_components_is_recorded_and_one_that_patches_the_harness_is_refused(tiny_root, tmp_path):
    silent = tmp_path / "silent.py"
    silent.write_text("# registers nothing; a run must still name it\nVALUE = 1\n")
    result = bench(*run_args(tiny_root, tmp_path / "runs", "--plugin", silent, aug="flip", epochs=1))
    assert result.returncode == 0, result.stderr
    plugins = json.loads((tmp_path / "runs" / RUN_ID / "result.json").read_text())["plugins"]
    (entry,) = [p for p in plugins if p["path"] == str(silent)]
    assert entry["source"] == "file" and entry["sha256"] == hashlib.sha256(silent.read_bytes()).hexdigest()
    patcher = tmp_path / "patcher.py"
    patcher.write_text("import harness.train\n\nharness.train.Trainer.train_epoch = lambda self, *a: None\n")
    line = one_error_line(bench(*run_args(tiny_root, tmp_path / "other", "--plugin", patcher, aug="flip", epochs=1)))
    assert str(patcher) in line and "harness.train.Trainer.train_epoch" in line and "never change the harness" in line
    assert not (tmp_path / "other").exists()
