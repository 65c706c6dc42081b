"""The run folder: ``result.json`` (metrics and provenance) and ``scores.npz``.

Every file is written atomically (a temporary file in the same folder, then ``os.replace``),
so a crash never leaves a half-written result. A run folder whose ``result.json`` exists is
finished and is never overwritten unless the caller says so.

``scores.npz`` holds ``scores`` (N×C float32 logits), ``labels`` (N×C int8: 1, 0, -1) and
``ids`` (N strings), in the test split's order.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from harness import __version__
from harness.errors import BadInput, UserError

RESULT_SCHEMA_VERSION = 1
RESULT_FILE = "result.json"
SCORES_FILE = "scores.npz"


def atomic_write(path: Path, write) -> None:
    """Call ``write(stream)`` on a temporary file beside ``path``, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_json(path: Path, record: Any) -> None:
    """Write ``record`` as indented JSON, atomically."""
    text = json.dumps(record, indent=2, sort_keys=False, default=_json_default) + "\n"
    atomic_write(path, lambda stream: stream.write(text.encode()))


def _json_default(value: Any):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_scores(path: Path, scores: np.ndarray, labels: np.ndarray, ids) -> None:
    """Write ``scores.npz`` atomically, with the dtypes the format fixes."""
    arrays = {
        "scores": np.asarray(scores, dtype=np.float32),
        "labels": np.asarray(labels, dtype=np.int8),
        "ids": np.asarray([str(i) for i in ids]),
    }
    atomic_write(path, lambda stream: np.savez(stream, **arrays))


def read_scores(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read ``(scores, labels, ids)`` from a run folder or a ``.npz`` file."""
    path = Path(path)
    if path.is_dir():
        path = path / SCORES_FILE
    if not path.is_file():
        raise BadInput(f"{path}: no such file; give a run folder or a scores.npz file")
    if path.suffix != ".npz":
        raise BadInput(f"{path}: not a .npz file; give a run folder or its scores.npz")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = {"scores", "labels"} - set(data.files)
            if missing:
                raise BadInput(f"{path}: missing array(s) {', '.join(sorted(missing))}; expected scores, labels, ids")
            scores, labels = data["scores"], data["labels"]
            ids = data["ids"] if "ids" in data.files else np.arange(len(scores)).astype(str)
    except (OSError, ValueError) as error:
        raise BadInput(f"{path}: not a readable .npz file ({error})") from None
    return scores, labels, ids


def read_result(run_dir: Path) -> dict[str, Any]:
    """The ``result.json`` of a finished run folder."""
    path = Path(run_dir) / RESULT_FILE
    if not path.is_file():
        raise UserError(f"{run_dir}: no {RESULT_FILE}; is it a finished run folder?")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise BadInput(f"{path}: invalid JSON ({error})") from None


def is_finished(run_dir: Path) -> bool:
    return (Path(run_dir) / RESULT_FILE).is_file()


def claim_run_dir(run_dir: Path, *, overwrite: bool, resume: bool = False) -> Path:
    """Create ``run_dir`` for a new run, refusing to replace a finished or unfinished one."""
    run_dir = Path(run_dir)
    if is_finished(run_dir) and not overwrite:
        raise UserError(
            f"{run_dir} holds a finished run; pass --overwrite to replace it or --run-id to name another"
        )
    if run_dir.exists() and any(run_dir.iterdir()) and not (overwrite or resume):
        raise UserError(
            f"{run_dir} holds an unfinished run; continue it with `bench run --resume {run_dir}` "
            f"or pass --overwrite to start again"
        )
    if overwrite and run_dir.exists():
        for stale in run_dir.iterdir():
            if stale.is_file() and not stale.name.startswith("."):
                stale.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def git_commit() -> str | None:
    """The commit of the harness source tree, when it is a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment() -> dict[str, Any]:
    """Library versions and the machine, for every result record."""
    import torch
    import torchvision

    versions = {
        "harness": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
    }
    try:
        import timm

        versions["timm"] = timm.__version__
    except ImportError:  # pragma: no cover - timm is a dependency
        pass
    return {
        "versions": versions,
        "git_commit": git_commit(),
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
