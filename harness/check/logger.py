"""``bench check`` for loggers: only what can be checked without opening one."""

from __future__ import annotations

from harness.check.checklist import Checklist, Problem


def check_logger(checklist: Checklist) -> None:
    """A logger is opened only by a run (it may write to a server); here its ``open`` must be callable."""

    def callable_open() -> None:
        if not callable(checklist.component.spec.open):
            raise Problem(f"open is {type(checklist.component.spec.open).__name__}, not callable")

    checklist.run("open is callable (a logger is opened only by a run)", callable_open)
