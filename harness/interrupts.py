"""Stopping a run on request: Ctrl-C, and SIGTERM or SIGUSR1 (a cluster ending or preempting a job).

While a run trains, SIGTERM and SIGUSR1 raise a ``KeyboardInterrupt`` in the main thread, as
Ctrl-C does. The run folder then holds ``run.json`` and the checkpoint written after the last
finished epoch (checkpoints are written atomically, so a signal during a write leaves the
previous one), and ``--resume`` continues from there bit for bit; the unfinished epoch is
trained again. The run ends with ``harness.errors.Interrupted``: one line saying how to
continue, exit code 128 + the signal's number. No plugin is blamed: the plugin wrapper lets
``KeyboardInterrupt`` through.
"""

from __future__ import annotations

import contextlib
import shlex
import signal
import threading
from pathlib import Path
from typing import Iterator

from harness.errors import Interrupted

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class Signalled(KeyboardInterrupt):
    """SIGTERM or SIGUSR1 arrived while a run trained; ``signal`` is its number."""

    def __init__(self, number: int):
        super().__init__(signal.Signals(number).name)
        self.signal = number


def _raise(number: int, frame) -> None:
    raise Signalled(number)


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGUSR1 raise ``Signalled`` in the main thread. Only
    signals left at their default are taken: a handler someone else installed (submitit's,
    a notebook's) stays; outside the main thread nothing changes."""
    taken = {}
    if threading.current_thread() is threading.main_thread():
        for number in STOP_SIGNALS:
            if signal.getsignal(number) == signal.SIG_DFL:
                taken[number] = signal.signal(number, _raise)
    try:
        yield
    finally:
        for number, previous in taken.items():
            signal.signal(number, previous)


def stopped_run(error: KeyboardInterrupt, run_dir: Path, folder: Path | None, epochs_done: int, epochs: int) -> Interrupted:
    """The one line for a run stopped by ``error``: ``folder`` is where it wrote (``None``
    before its run folder was claimed), ``epochs_done`` how many epochs its checkpoint holds."""
    number = error.signal if isinstance(error, Signalled) else signal.SIGINT
    what = "interrupted (Ctrl-C)" if number == signal.SIGINT else f"stopped by {signal.Signals(number).name}"
    if folder is None:
        message = f"{what} before the run folder was written; nothing to resume"
    elif Path(folder) != Path(run_dir):
        message = (f"{what}; {run_dir} is unchanged (the run replacing it had not finished); run the same command "
                   "again to start over")
    else:
        message = (f"{what} after {epochs_done} of {epochs} epochs, checkpoint kept; continue with "
                   f"`bench run --resume {shlex.quote(str(run_dir))}`")
    return Interrupted(message, exit_code=128 + int(number))
