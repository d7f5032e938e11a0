"""What every command shares: turning library errors into one red line and exit code 2."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TypeVar

import typer
from rich.console import Console

from nerx.errors import NerxError

# Everything human-readable goes to stderr, so stdout stays clean for piped data.
err_console = Console(stderr=True, highlight=False)

F = TypeVar("F", bound=Callable)


def fail(message: str, code: int = 2) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)
    return typer.Exit(code)


def handles_errors(func: F) -> F:
    """Run a command body; a user mistake becomes one red line and exit code 2, no traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except NerxError as exc:
            raise fail(_escape(str(exc)), exc.exit_code) from None
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
            # Some libraries raise these with neither a file name nor an OS message.
            detail = exc.strerror or str(exc) or type(exc).__name__
            message = f"{exc.filename}: {detail}" if exc.filename else detail
            raise fail(_escape(message)) from None
        except BrokenPipeError:
            # A downstream `head` closed the pipe: stop quietly like any Unix filter.
            sys.stderr.close()
            raise typer.Exit(0) from None
        except KeyboardInterrupt:
            raise fail("interrupted; no output file was left half-written", 130) from None

    return wrapper  # type: ignore[return-value]


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
