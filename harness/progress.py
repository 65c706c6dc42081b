"""What a command shows while it works: progress bars on a terminal, one line per step in a log.

The harness logs to the ``harness`` logger; the CLI sends it to stderr (``--quiet`` silences
it). Progress bars are drawn only when stderr is a terminal and the logger would show the
lines, so a redirected run writes one line per epoch, never bar redraws. The Python API
(``harness.run``) shows progress when nobody configured logging: the epoch lines on stderr
and ``tqdm.auto`` bars (a widget in a notebook); once logging is configured, the lines go
where it says and the API draws no bars of its own.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Iterable, Iterator, TypeVar

log = logging.getLogger("harness")
T = TypeVar("T")
_bars_hidden = False
_auto_bars = False  # the API shows bars where stderr is no terminal (a notebook)


class _Stderr(logging.Handler):
    """Writes each line to whatever ``sys.stderr`` is at the time (test runners swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(self.format(record) + "\n")
        sys.stderr.flush()


def to_stderr(quiet: bool) -> None:
    """Show the harness's lines on stderr (the CLI calls this once per command)."""
    if not any(isinstance(h, _Stderr) for h in log.handlers):
        log.addHandler(_Stderr())
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    log.propagate = False


def show_bars() -> bool:
    return not _bars_hidden and log.isEnabledFor(logging.INFO) and (_auto_bars or sys.stderr.isatty())


def bar(iterable: Iterable[T], *, desc: str, unit: str, total: int | None = None) -> Iterable[T]:
    """``iterable`` with a progress bar on a terminal, or as it is."""
    if not show_bars():
        return iterable
    if _auto_bars:
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm

    return tqdm(iterable, desc=desc, unit=unit, total=total, leave=False)


def logging_configured() -> bool:
    """Whether anyone set up where the harness's lines go: a handler or a level on its logger,
    or a handler on the root logger."""
    return bool(log.handlers) or log.level != logging.NOTSET or bool(logging.getLogger().handlers)


@contextlib.contextmanager
def api_progress() -> Iterator[None]:
    """For the Python API: when logging is not configured, show the run's progress for the
    block (epoch lines on stderr, ``tqdm.auto`` bars); otherwise change nothing."""
    global _auto_bars
    if logging_configured():
        yield
        return
    handler = _Stderr()
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    _auto_bars = True
    try:
        yield
    finally:
        _auto_bars = False
        log.removeHandler(handler)
        log.setLevel(logging.NOTSET)
        log.propagate = True


@contextlib.contextmanager
def log_to(path: Path) -> Iterator[None]:
    """Send the harness's lines to ``path`` instead of the console for the block (sweep cells)."""
    global _bars_hidden
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="w")
    console = [h for h in log.handlers if isinstance(h, _Stderr)]
    level = log.level
    for h in console:
        log.removeHandler(h)
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    _bars_hidden = True
    try:
        yield
    finally:
        _bars_hidden = False
        log.removeHandler(handler)
        handler.close()
        for h in console:
            log.addHandler(h)
        log.setLevel(level)
