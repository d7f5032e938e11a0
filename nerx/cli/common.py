"""What every command shares: turning library errors into one red line and exit code 2."""

from __future__ import annotations

import errno
import functools
import sys
from collections.abc import Callable
from typing import TypeVar

import typer
from rich.console import Console

from nerx.defaults import DEFAULT_MODEL
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
        except BrokenPipeError:
            # A downstream `head` closed the pipe: stop quietly like any Unix filter.
            sys.stderr.close()
            raise typer.Exit(0) from None
        except OSError as exc:
            # The one boundary for the OS: a full disk, a read-only mount, a missing or
            # unreadable file... The writers have already removed any partial output.
            raise fail(_escape(os_error_message(exc))) from None
        except KeyboardInterrupt:
            raise fail("interrupted; no output file was left half-written", 130) from None

    return wrapper  # type: ignore[return-value]


def os_error_message(exc: OSError) -> str:
    """``path: what the OS said`` (the writers name the path the user gave)."""
    # Some libraries raise these with neither a file name nor an OS message.
    detail = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno == errno.ENOSPC:
        detail += "; free some space and run again"
    elif exc.errno == errno.EROFS:
        detail += "; write somewhere else"
    return f"{exc.filename}: {detail}" if exc.filename else detail


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


# Options that several commands share, defined once so they mean the same everywhere.
_TABLES = "Tables and Label Studio"
TEXT_COLUMN = typer.Option(
    None,
    "--text-column",
    help="Table column (or Label Studio data field) holding the text. Default: text.",
    rich_help_panel=_TABLES,
)
ID_COLUMN = typer.Option(
    None,
    "--id-column",
    help="Table column holding the document id. Default: id if present, else the row number.",
    rich_help_panel=_TABLES,
)
ANNOTATOR = typer.Option(
    None,
    "--annotator",
    help="Label Studio export: read this annotator's annotations (user id or e-mail).",
    rich_help_panel=_TABLES,
)


# The options every command means the same by (sqlite-utils' shared options): one factory per
# concept, so a flag and its short form never differ between commands. A command may word the
# help for what the option does there.
def model_option(
    default: str | None = DEFAULT_MODEL,
    help: str = "A bundled model name (see `nerx models`) or a directory written by nerx train.",
):
    return typer.Option(default, "--model", "-m", help=help)


def from_option(
    help: str = "Input format, when detection (suffix, then content) is not enough.",
    *,
    flags: tuple[str, ...] = ("--from", "-f"),
):
    return typer.Option(None, *flags, help=help)


def to_option(
    help: str = "Output format. Default: from the output's suffix, else jsonl.",
):
    return typer.Option(None, "--to", "-t", help=help)


def output_option(default: str | None = "-", help: str = "Output file; - is stdout."):
    return typer.Option(default, "--output", "-o", help=help)


def device_option(default: str = "auto"):
    return typer.Option(default, "--device", "-d", help="auto, cpu, cuda or cuda:N.")


def precision_option(default: str = "auto"):
    return typer.Option(
        default, "--precision", help="auto (bf16 on GPU, fp32 on CPU), bf16 or fp32: autocast."
    )


def lang_option(default: str = "en"):
    return typer.Option(
        default, "--lang", help="Language of the spaCy tokenizer and sentencizer for raw text."
    )


def quiet_option(help: str = "No progress bar and no summary on stderr."):
    return typer.Option(False, "--quiet", "-q", help=help)


def warn(message: str) -> None:
    """One yellow line on stderr."""
    err_console.print(f"[yellow]warning:[/] {_escape(message)}", soft_wrap=True)
