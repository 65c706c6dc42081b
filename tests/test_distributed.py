"""Two processes under torchrun (gloo, CPU) train like one: the same augmented global batches
(mixup pairs across the whole batch), every test image scored once, only rank 0 writing."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import numpy as np
import pytest
from conftest import TINY_PLUGIN

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_processes_match_one_and_only_rank_zero_writes(tiny_root, tmp_path):
    common = ["run", "--plugin", TINY_PLUGIN, "--dataset", "tiny", "--data-root", str(tiny_root),
              "--model", "tiny-plain", "--aug", "mixup", "--protocol", "smoke", "--batch-size", "16",
              "--size", "32", "--epochs", "2", "--device", "cpu", "--quiet"]
    single = subprocess.run([sys.executable, "-m", "harness", *common, "--out", str(tmp_path / "one")],
                            capture_output=True, text=True)
    assert single.returncode == 0, single.stderr
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                "--master-addr", "127.0.0.1", "--master-port", str(free_port()), "-m", "harness"]
    double = subprocess.run([*launcher, *common, "--out", str(tmp_path / "two")], capture_output=True, text=True,
                            timeout=300)
    assert double.returncode == 0, double.stderr[-3000:]
    assert double.stdout.count("run folder:") == 1

    [one] = [p for p in (tmp_path / "one").iterdir() if p.is_dir()]
    [two] = [p for p in (tmp_path / "two").iterdir() if p.is_dir()]
    record = json.loads((two / "result.json").read_text())
    assert record["world_size"] == 2
    with np.load(one / "scores.npz") as a, np.load(two / "scores.npz") as b:
        assert list(a["ids"]) == list(b["ids"]) and len(set(b["ids"])) == 48
        assert np.allclose(a["scores"], b["scores"], atol=1e-4)
    log_one = json.loads((one / "log.json").read_text())
    log_two = json.loads((two / "log.json").read_text())
    assert [e["loss"] for e in log_two] == pytest.approx([e["loss"] for e in log_one], abs=1e-4)
