"""A cache folder that cannot be written is one line naming it, from a real ``bench run``.

Tests run as root, for whom a permission bit stops no write, so the folder is made read-only
for real: bind-mounted read-only over itself in a private mount namespace (``unshare -m``)
that the command runs in, which no other process sees and which ends with it."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys

import pytest

from test_run_safety import one_error_line, run_args


def _can_mount_privately() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-m", "mount", "--bind", "/tmp", "/tmp"],
                          capture_output=True).returncode == 0


pytestmark = pytest.mark.skipif(not _can_mount_privately(),
                                reason="needs `unshare -m` and mount, to make a folder read-only for real")


def bench_with_read_only(folder, *args, env=None):
    """``bench ARGS`` as a real process that sees ``folder`` mounted read-only."""
    command = shlex.join([sys.executable, "-m", "harness", *map(str, args)])
    quoted = shlex.quote(str(folder))
    script = f"mount --bind {quoted} {quoted} && mount -o remount,bind,ro {quoted} && exec {command}"
    return subprocess.run(["unshare", "-m", "sh", "-c", script], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("state", ["empty", "filled"])
def test_a_read_only_cache_folder_is_one_line_naming_it(tiny_root, tmp_path, state):
    cache = tmp_path / "cache"
    cache.mkdir()
    env = {**os.environ, "BENCH_CACHE_DIR": str(cache)}
    if state == "filled":  # the entries a run needs are there, complete, but their use cannot be recorded
        done = subprocess.run([sys.executable, "-m", "harness", *map(str, run_args(tiny_root, tmp_path / "first", epochs=1))],
                              env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    before = sorted(p.relative_to(cache) for p in cache.rglob("*"))
    result = bench_with_read_only(cache, *run_args(tiny_root, tmp_path / "runs", epochs=1), env=env)
    assert result.returncode == 1
    # the run prepares the test split's images first (runner._image_arrays)
    where = cache / "images" if state == "empty" else next(cache.glob("images/tiny-test-*.lock"))
    assert one_error_line(result) == (f"Error: cannot write the cache at {where} (Read-only file system); set "
                                      "BENCH_CACHE_DIR to a folder you can write")
    assert sorted(p.relative_to(cache) for p in cache.rglob("*")) == before
    assert not (tmp_path / "runs").exists()
    retried = bench_with_read_only(cache, *run_args(tiny_root, tmp_path / "runs", "--no-cache", epochs=1), env=env)
    assert retried.returncode == 0, retried.stderr  # without the image cache the run needs no cache writes
