"""User-facing failures: one line that names what is at fault and what to do.

Raise ``UserError`` for anything a user can fix (a missing file, a bad value, a broken
plugin). The CLI prints its message as a single line and exits with ``exit_code``; the
traceback is shown only with ``bench --verbose``.
"""

from __future__ import annotations


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
