"""The ``bench`` command line: a thin layer over the Python API.

Every command lives in its own module here. Errors a user can fix (``UserError``) print as
one line of at most ``harness.errors.LINE_LIMIT`` characters and exit with their code;
``bench --verbose`` shows the whole message and the traceback.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import traceback

import click

from harness import __version__
from harness.errors import Interrupted, UserError, cut, one_line


class BenchGroup(click.Group):
    """A click group that turns ``UserError`` into one line on stderr and an exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as error:
            verbose = bool(ctx.obj and ctx.obj.get("verbose"))
            if verbose:
                traceback.print_exc()
            click.echo(f"Error: {error if verbose else cut(error)}", err=True)
            sys.exit(error.exit_code)
        except (click.exceptions.Exit, click.ClickException):
            raise
        except Interrupted as error:
            click.echo(f"Error: {cut(error)}", err=True)
            sys.exit(error.exit_code)
        except KeyboardInterrupt:
            click.echo("Error: interrupted; an unfinished run continues with `bench run --resume RUN_DIR`", err=True)
            sys.exit(130)
        except Exception as error:  # a bug: still one line, the traceback on request
            if ctx.obj and ctx.obj.get("verbose"):
                traceback.print_exc()
            click.echo(f"Error: unexpected {one_line(error)}; rerun with `bench --verbose` for the traceback", err=True)
            sys.exit(1)


@click.group(cls=BenchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bench")
@click.option("--verbose", is_flag=True, help="Show tracebacks and plugin load errors in full.")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """Train, score and compare multi-label image classifiers under one fixed protocol."""
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose


def _add_commands() -> None:
    """Add the ``COMMANDS`` list of every module in this package (one module per command)."""
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for command in getattr(module, "COMMANDS", ()):
            main.add_command(command)


_add_commands()
