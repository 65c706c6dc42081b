"""``import harness`` tunes the CPU runtime without changing a number: torch's OpenMP threads
wait passively only where other processes keep the cores busy, and glibc's malloc keeps a
step's buffers in the heap; every setting of the user's is kept."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import numpy as np
import pytest
from conftest import TINY_PLUGIN

from harness.machine import MALLOC_VARIABLES, openmp_wait_policy
from harness.rundir import read_scores

# Ten 8 MiB arrays made, touched and freed four times; prints the page faults of each round.
FAULT_PROBE = """
import resource
import harness
import numpy as np
rounds = []
for _ in range(4):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    arrays = [np.ones(1 << 20) for _ in range(10)]
    del arrays
    rounds.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(*rounds)
"""


def python(code: str, environment: dict) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, check=True)
    return result.stdout.strip()


def without(*names: str) -> dict:
    return {k: v for k, v in os.environ.items() if k not in names}


def test_threads_wait_passively_only_on_busy_cores():
    assert openmp_wait_policy(load=0.2, cores=2) is None
    assert openmp_wait_policy(load=1.9, cores=2) is None
    assert openmp_wait_policy(load=2.0, cores=2) == "PASSIVE"
    assert openmp_wait_policy(load=7.5, cores=16) is None


def test_a_wait_policy_the_user_set_is_kept():
    code = "import os, harness, torch; print(os.environ['OMP_WAIT_POLICY'])"
    for policy in ("ACTIVE", "PASSIVE"):
        assert python(code, {**os.environ, "OMP_WAIT_POLICY": policy}) == policy


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the malloc thresholds are glibc's")
def test_freed_buffers_stay_in_the_heap_unless_the_user_tuned_malloc():
    tuned = [int(n) for n in python(FAULT_PROBE, without(*MALLOC_VARIABLES)).split()]
    assert tuned[0] >= 4000  # 80 MiB touched: at least one fault per 16 KiB
    assert max(tuned[1:]) < tuned[0] / 10  # later rounds reuse the heap
    users = [int(n) for n in python(FAULT_PROBE, {**without(*MALLOC_VARIABLES), "GLIBC_TUNABLES": ""}).split()]
    assert min(users[1:]) > users[0] / 2  # left to glibc's defaults, every round maps its memory again


@pytest.mark.slow
def test_wait_policies_and_malloc_thresholds_train_the_same_bits(tiny_root, tmp_path):
    settings = {"ACTIVE": {"OMP_WAIT_POLICY": "ACTIVE"}, "PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
                "glibc-malloc": {"OMP_WAIT_POLICY": "PASSIVE", "GLIBC_TUNABLES": ""}}
    scores = {}
    for name, variables in settings.items():
        result = subprocess.run(
            [sys.executable, "-m", "harness", "run", "--plugin", TINY_PLUGIN, "--dataset", "tiny", "--data-root",
             str(tiny_root), "--model", "tiny-cnn", "--size", "32", "--epochs", "2", "--device", "cpu",
             "--out", str(tmp_path), "--run-id", name, "--quiet"],
            capture_output=True, text=True, env={**without(*MALLOC_VARIABLES), **variables, "OMP_NUM_THREADS": "2"},
            timeout=600)
        assert result.returncode == 0, result.stderr
        scores[name] = read_scores(tmp_path / name)[0].view(np.int32)
    assert np.array_equal(scores["ACTIVE"], scores["PASSIVE"])
    assert np.array_equal(scores["PASSIVE"], scores["glibc-malloc"])
