"""What a run writes while it works: one line per epoch into a log, progress bars only on a terminal."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from conftest import TINY_PLUGIN

pytestmark = pytest.mark.slow


def args(tiny_root, out):
    return [sys.executable, "-m", "harness", "run", "--plugin", TINY_PLUGIN, "--dataset", "tiny", "--data-root",
            str(tiny_root), "--model", "tiny-cnn", "--size", "32", "--epochs", "2", "--device", "cpu", "--out", str(out)]


def environment():
    return dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))


def test_redirected_output_has_one_line_per_epoch_and_no_bar_redraws(tiny_root, tmp_path):
    with open(tmp_path / "out.log", "w") as out, open(tmp_path / "err.log", "w") as err:
        code = subprocess.run(args(tiny_root, tmp_path / "runs"), stdout=out, stderr=err, env=environment()).returncode
    assert code == 0
    stdout, stderr = (tmp_path / "out.log").read_text(), (tmp_path / "err.log").read_text()
    assert "\r" not in stdout + stderr
    epochs = [line for line in stderr.splitlines() if line.startswith("epoch ")]
    assert len(epochs) == 2 and len(stderr.splitlines()) == 2
    assert re.fullmatch(r"epoch 2/2  loss \d\.\d{4}  \d+ img/s  \d+\.\d s  \(elapsed \d+ s\)", epochs[1])
    assert "map (mAP)" in stdout and "run folder:" in stdout and len(stdout) < 2000


def test_a_terminal_gets_progress_bars_and_quiet_gets_nothing(tiny_root, tmp_path):
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a real terminal has a width
    process = subprocess.Popen(args(tiny_root, tmp_path / "runs"), stdout=subprocess.DEVNULL, stderr=secondary,
                               env=environment())
    os.close(secondary)
    shown = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    assert process.wait() == 0
    assert b"\r" in shown and b"batch" in shown  # tqdm redraws its bar in place
    quiet = subprocess.run([*args(tiny_root, tmp_path / "quiet"), "--quiet"], capture_output=True, text=True,
                           env=environment())
    assert quiet.returncode == 0 and quiet.stderr == ""
