"""Stopping a run on request: Ctrl-C, and SIGTERM or SIGUSR1 (a cluster ending or preempting a job).

While a run trains, these signals are noted and the trainer stops at the end of a step
(``StopSignals.check``: every step on a CPU, with the loss's NaN check every 25 on a GPU; all
processes of a torchrun agree), where no library is in the middle of anything: raising from
the handler itself could leave a logger's or a data loader's lock held. A second signal stops
at once. The run folder then holds ``run.json`` and the checkpoint written after the last
finished epoch, and ``--resume`` continues from there bit for bit; the unfinished epoch is
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

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)


class Signalled(KeyboardInterrupt):
    """SIGTERM or SIGUSR1 arrived while a run trained; ``signal`` is its number."""

    def __init__(self, number: int):
        super().__init__(signal.Signals(number).name)
        self.signal = number


class StopSignals:
    """The stop signals received while a run trains; ``check()`` raises ``Signalled`` for the first."""

    def __init__(self):
        self.received: int | None = None

    def note(self, number: int, frame) -> None:
        if self.received is not None:  # asked twice: stop now
            raise Signalled(number)
        self.received = number

    def check(self, world=None) -> None:
        """Raise ``Signalled`` once a signal came. With several processes (``world``) every one
        must call this at the same step: they agree, so that none is left waiting in a collective."""
        received = self.received
        if world is not None and world.size > 1:
            from harness.distributed import sum_over_processes

            if sum_over_processes(float(received is not None), world) and received is None:
                received = signal.SIGTERM  # another process was signalled
        if received is not None:
            raise Signalled(received)


def _default(number: int):
    return signal.default_int_handler if number == signal.SIGINT else signal.SIG_DFL


@contextlib.contextmanager
def stop_signals() -> Iterator[StopSignals]:
    """Within the block, Ctrl-C, SIGTERM and SIGUSR1 are noted in the returned ``StopSignals``.
    Only signals left at their default are taken: a handler someone else installed (submitit's)
    stays; outside the main thread nothing changes."""
    stop, taken = StopSignals(), {}
    if threading.current_thread() is threading.main_thread():
        for number in STOP_SIGNALS:
            if signal.getsignal(number) == _default(number):
                taken[number] = signal.signal(number, stop.note)
    try:
        yield stop
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
        kept = ", checkpoint kept" if epochs_done else ""
        message = (f"{what} after {epochs_done} of {epochs} epochs{kept}; continue with "
                   f"`bench run --resume {shlex.quote(str(run_dir))}`")
    return Interrupted(message, exit_code=128 + int(number))
