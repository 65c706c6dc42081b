"""User-facing failures: one line that names what is at fault and what to do.

Raise ``UserError`` for anything a user can fix (a missing file, a bad value, a broken
plugin). The CLI prints its message as a single line of at most ``LINE_LIMIT`` characters
and exits with ``exit_code``; the full message and the traceback are shown only with
``bench --verbose``.
"""

from __future__ import annotations

LINE_LIMIT = 300


class UserError(Exception):
    """An error the user can act on; ``str(error)`` is the whole message."""

    exit_code = 1

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class BadInput(UserError):
    """Malformed input data (scores, labels, files): exit code 2, as for a usage error."""

    exit_code = 2


class PluginError(UserError):
    """A plugin failed to import, registered a bad component, or a component misbehaved."""


class Interrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C (SIGINT) or by SIGTERM/SIGUSR1 (a cluster ending or preempting
    its job). It stays a ``KeyboardInterrupt`` (sweeps and notebooks stop, no plugin is
    blamed); ``str(error)`` says how to continue, and the CLI prints it as one line and
    exits with ``exit_code``: 128 + the signal's number (130 for Ctrl-C)."""

    def __init__(self, message: str, exit_code: int = 130):
        super().__init__(message)
        self.exit_code = exit_code


def cut(text: str, limit: int = LINE_LIMIT) -> str:
    """``text`` as one line of at most ``limit`` characters (whitespace runs become one space)."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def one_line(error: BaseException, limit: int = 200) -> str:
    """An exception as one short line: its type and its message, whitespace collapsed.

    ``SystemExit`` and ``KeyboardInterrupt`` say what happened rather than their bare code.
    """
    if isinstance(error, SystemExit):
        return f"called sys.exit({error.code!r})"
    if isinstance(error, KeyboardInterrupt):
        return "was interrupted (KeyboardInterrupt)"
    message = " ".join(str(error).split())
    return cut(f"{type(error).__name__}: {message}".rstrip(": "), limit)
