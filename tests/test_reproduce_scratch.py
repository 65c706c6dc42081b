"""A killed ``bench leaderboard reproduce`` leaves no scratch folder behind for long: the next
one removes the scratch folders of processes that have ended (real processes, real folders)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

LEAVE_SCRATCH = "import os, sys; os.makedirs(os.path.join(sys.argv[1], f'bench-reproduce-{os.getpid()}-abc123') + '/plugins')"


def test_the_next_reproduce_removes_the_scratch_of_a_process_that_ended(tmp_path):
    subprocess.run([sys.executable, "-c", LEAVE_SCRATCH, str(tmp_path)], check=True)
    (abandoned,) = tmp_path.glob("bench-reproduce-*")
    live = tmp_path / f"bench-reproduce-{os.getpid()}-live01"  # this test's own process is running
    live.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / f"bench-reproduce-{2**22 + 7}-link01").symlink_to(elsewhere)
    environment = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    result = subprocess.run([sys.executable, "-m", "harness", "leaderboard", "reproduce", "0123456789ab",
                             "--leaderboards", str(tmp_path / "lb")], env=environment, capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.startswith("Error: no stored submission '0123456789ab'")
    assert not abandoned.exists() and live.is_dir() and elsewhere.is_dir()
    assert (tmp_path / f"bench-reproduce-{2**22 + 7}-link01").is_symlink()
