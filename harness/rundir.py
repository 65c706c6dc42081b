"""The run folder on disk: its files, its scores, and replacing a run without losing one.

``OUT/<run-id>/`` holds what the harness writes (``RUN_FILES``): ``result.json`` (the
``RunRecord``), ``scores.npz`` (``scores`` N×C float32 logits, ``labels`` N×C int8 1/0/-1,
``ids``; compressed, which is lossless), ``log.json`` (one entry per epoch), ``run.json``
(the resolved run, for ``--resume`` and ``reproduce``), ``train_split.npz`` (the train
``ids`` and ``labels``, which ``submit`` proves against ``dataset.train_hash`` and checks
for test ids), ``model.pt`` and, until the run
finishes, ``checkpoint.pt``. Anything else in the folder belongs to the user and is never
touched.

Every file is written atomically (``harness.files.atomic_write``).
A run that replaces a finished or unfinished one (``--overwrite``) trains in a staging
folder beside it and is swapped in only once finished; a kill at any point leaves either
the old run or the new one, and the user's files stay where they were.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from harness.errors import BadInput, UserError
from harness.files import atomic_write, load_npz
from harness.results import RESULT_FILE

SCORES_FILE = "scores.npz"
LOG_FILE = "log.json"
RUN_FILE = "run.json"
MODEL_FILE = "model.pt"
CHECKPOINT_FILE = "checkpoint.pt"
TRAIN_SPLIT_FILE = "train_split.npz"
RUN_FILES = (RESULT_FILE, SCORES_FILE, LOG_FILE, RUN_FILE, MODEL_FILE, CHECKPOINT_FILE, TRAIN_SPLIT_FILE)


def scores_arrays(scores: np.ndarray, labels: np.ndarray, ids) -> dict[str, np.ndarray]:
    """The arrays of ``scores.npz`` with the dtypes the format fixes."""
    return {
        "scores": np.asarray(scores, dtype=np.float32),
        "labels": np.asarray(labels, dtype=np.int8),
        "ids": np.asarray([str(i) for i in ids]),
    }


def write_scores(path: Path, scores: np.ndarray, labels: np.ndarray, ids) -> None:
    """Write ``scores.npz`` atomically and compressed (lossless)."""
    arrays = scores_arrays(scores, labels, ids)
    atomic_write(path, lambda stream: np.savez_compressed(stream, **arrays))


def read_scores(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read ``(scores, labels, ids)`` from a run folder or a ``.npz`` file (no pickles)."""
    path = Path(path)
    if path.is_dir():
        path = path / SCORES_FILE
    if not path.is_file():
        raise BadInput(f"{path}: no such file; give a run folder or a scores.npz file")
    if path.suffix != ".npz":
        raise BadInput(f"{path}: not a .npz file; give a run folder or its scores.npz")
    data = load_npz(path, "scores file")
    missing = {"scores", "labels"} - set(data)
    if missing:
        raise BadInput(f"{path}: missing array(s) {', '.join(sorted(missing))}; expected scores, labels, ids")
    scores, labels = data["scores"], data["labels"]
    ids = data["ids"] if "ids" in data else np.arange(len(scores)).astype(str)
    return scores, labels, ids


def is_finished(run_dir: Path) -> bool:
    return (Path(run_dir) / RESULT_FILE).is_file()


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``.<run-id>.lock`` beside the run folder for the whole run: one process per run."""
    from filelock import FileLock, Timeout

    run_dir.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(run_dir.parent / f".{run_dir.name}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise UserError(f"{run_dir} is being written by another bench process; wait for it to finish") from None
    try:
        yield
    finally:
        lock.release()


def staging_dir(run_dir: Path) -> Path:
    """Where a run that replaces ``run_dir`` trains until it has finished."""
    return run_dir.parent / f".{run_dir.name}.staging"


def _previous_dir(run_dir: Path) -> Path:
    return run_dir.parent / f".{run_dir.name}.previous"


def _harness_file(path: Path) -> bool:
    """A file the harness wrote: one of ``RUN_FILES`` or a temporary file of one."""
    name = path.name
    return path.is_file() and (name in RUN_FILES or any(name.startswith(f".{f}.") and name.endswith(".tmp") for f in RUN_FILES))


def _clear_harness_files(folder: Path) -> None:
    """Delete the harness's files in ``folder``, and the folder if nothing else is left."""
    for entry in folder.iterdir():
        if _harness_file(entry):
            entry.unlink()
    with contextlib.suppress(OSError):
        folder.rmdir()


def _finish_swap(run_dir: Path) -> None:
    """Finish or undo a swap that a killed process left half done."""
    previous = _previous_dir(run_dir)
    if previous.is_dir():
        if run_dir.is_dir():  # the new run is in place: bring the user's files over
            _move_user_files(previous, run_dir)
            _clear_harness_files(previous)
        else:  # killed between the two renames: the old run goes back
            os.replace(previous, run_dir)


def recover(run_dir: Path) -> None:
    """Repair what a killed process left beside ``run_dir``: a half-done swap, an abandoned
    staging folder (call with the run lock held)."""
    _finish_swap(run_dir)
    staging = staging_dir(run_dir)
    if staging.is_dir():
        _clear_harness_files(staging)


def _move_user_files(source: Path, target: Path) -> None:
    for entry in list(source.iterdir()):
        if not _harness_file(entry) and not (target / entry.name).exists():
            os.replace(entry, target / entry.name)


def claim(run_dir: Path, *, overwrite: bool, resume: bool) -> Path:
    """The folder a run writes into (call with the run lock held).

    A new run writes into ``run_dir`` directly; a run that replaces an existing one
    (``overwrite``) writes into ``staging_dir(run_dir)``; a resumed run continues in
    ``run_dir``. Refuses, in one line, to replace anything unless told to.
    """
    recover(run_dir)
    refuse_if_taken(run_dir, overwrite=overwrite, resume=resume)
    if resume:
        return run_dir
    folder = staging_dir(run_dir) if _occupied(run_dir) else run_dir
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _occupied(run_dir: Path) -> bool:
    return run_dir.is_dir() and any(_harness_file(entry) for entry in run_dir.iterdir())


def refuse_if_taken(run_dir: Path, *, overwrite: bool, resume: bool) -> None:
    """One line when ``run_dir`` cannot take this run: finished (or unfinished) and not to
    be replaced, or finished when asked to resume. Changes nothing."""
    if resume:
        if is_finished(run_dir):
            raise UserError(f"{run_dir} is finished; nothing to resume")
        return
    if overwrite or not _occupied(run_dir):
        return
    if is_finished(run_dir):
        raise UserError(f"{run_dir} holds a finished run; pass --overwrite to replace it or --run-id to name another")
    raise UserError(
        f"{run_dir} holds an unfinished run; continue it with `bench run --resume {run_dir}` (and its --plugin "
        "options) or pass --overwrite to start again"
    )


def publish(folder: Path, run_dir: Path) -> None:
    """Put the finished run in ``folder`` at ``run_dir``: nothing to do when it trained there;
    from a staging folder, swap it in, keep the user's files, drop the old run's files."""
    if folder == run_dir:
        return
    if not run_dir.exists():
        os.replace(folder, run_dir)
        return
    _finish_swap(run_dir)
    previous = _previous_dir(run_dir)
    os.replace(run_dir, previous)
    os.replace(folder, run_dir)
    _move_user_files(previous, run_dir)
    _clear_harness_files(previous)
