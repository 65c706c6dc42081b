"""``import harness`` makes torch's OpenMP threads wait passively unless the user chose, and the
policy changes no trained number."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import TINY_PLUGIN

from harness.rundir import read_scores


def policy_after_import(environment: dict) -> str:
    code = "import os, harness, torch; print(os.environ['OMP_WAIT_POLICY'])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, check=True)
    return result.stdout.strip()


def test_passive_unless_the_user_set_a_policy():
    environment = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    assert policy_after_import(environment) == "PASSIVE"
    assert policy_after_import({**environment, "OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE"


@pytest.mark.slow
def test_active_and_passive_waiting_train_the_same_bits(tiny_root, tmp_path):
    scores = {}
    for policy in ("ACTIVE", "PASSIVE"):
        result = subprocess.run(
            [sys.executable, "-m", "harness", "run", "--plugin", TINY_PLUGIN, "--dataset", "tiny", "--data-root",
             str(tiny_root), "--model", "tiny-cnn", "--size", "32", "--epochs", "2", "--device", "cpu",
             "--out", str(tmp_path), "--run-id", policy, "--quiet"],
            capture_output=True, text=True, env={**os.environ, "OMP_WAIT_POLICY": policy, "OMP_NUM_THREADS": "2"},
            timeout=600)
        assert result.returncode == 0, result.stderr
        scores[policy] = read_scores(tmp_path / policy)[0]
    assert np.array_equal(scores["ACTIVE"].view(np.int32), scores["PASSIVE"].view(np.int32))
