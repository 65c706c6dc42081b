"""The machine a command runs on: its usable cores and memory, the CPU, the harness's commit,
and the environment every result record stores. One home for each, so that a run, ``bench
data verify`` and ``bench leaderboard reproduce`` count cores and describe hardware alike.
"""

from __future__ import annotations

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
