"""The machine a command runs on: its usable cores and memory, the CPU, the harness's commit,
and the environment every result record stores. One home for each, so that a run, ``bench
data verify`` and ``bench leaderboard reproduce`` count cores and describe hardware alike.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any


def usable_cores() -> int:
    """The CPU cores this process may run on: its affinity (a container's or a job's share),
    else every core the system has (macOS, Windows)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# glibc's mallopt parameters (malloc.h) and the values a training process uses: allocations up
# to 32 MiB (glibc's largest allowed threshold) come from the heap, and up to 256 MiB of freed
# heap is kept rather than handed back to the kernel.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
TRIM_THRESHOLD, MMAP_THRESHOLD = 256 << 20, 32 << 20
MALLOC_VARIABLES = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")


def openmp_wait_policy(load: float, cores: int) -> str | None:
    """``PASSIVE`` where other processes keep the cores busy (a 1-minute load average at or
    above the usable cores), else None: libgomp's default, which spins a while before sleeping.

    Spinning is fastest on free cores (1.1-1.2x the passive images/s of the smoke run here);
    on cores others use, a spinning thread holds the core its partner waits for (2-5x slower).
    """
    return "PASSIVE" if load >= cores else None


def tune_cpu_runtime() -> None:
    """Runtime settings that change no number, applied by ``import harness`` before torch loads.

    Torch's OpenMP threads wait as ``openmp_wait_policy`` says, unless ``OMP_WAIT_POLICY`` is
    set. glibc's malloc keeps a step's activations in the heap (``MMAP_THRESHOLD``,
    ``TRIM_THRESHOLD``) instead of mapping and unmapping them at every step: the smoke run had
    10x fewer page faults and a third of the system time. A ``MALLOC_*`` setting of the user's
    is kept, and other C libraries are left alone.
    """
    if "OMP_WAIT_POLICY" not in os.environ:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):  # Windows has no load average
            load = 0.0
        policy = openmp_wait_policy(load, usable_cores())
        if policy is not None:
            os.environ["OMP_WAIT_POLICY"] = policy
    if platform.libc_ver()[0] != "glibc" or any(name in os.environ for name in MALLOC_VARIABLES):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)


def available_memory(device) -> int:
    """Bytes a batch may use: free GPU memory, or the host's available memory."""
    import torch

    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str | None:
    """The commit of the harness source tree, when it is a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment() -> dict[str, Any]:
    """Library versions, the machine and torch's thread count, for every result record
    (``reproduce`` trains with the same thread count: CPU sums depend on how work is split).
    Versions come from the installed distributions' metadata: reading timm's costs no import."""
    import torch

    versions = {"harness": metadata.version("multilabel-bench"), "python": platform.python_version()}
    for name in ("torch", "torchvision", "numpy", "timm"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:  # pragma: no cover - all are dependencies
            pass
    return {
        "versions": versions,
        "git_commit": git_commit(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
