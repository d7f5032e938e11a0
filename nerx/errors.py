"""Every user-facing failure is a :class:`NerxError`.

The library raises these with three parts: *where* (``file:line`` or a document id), *what*
was wrong or expected, and a *hint* on how to fix it. Only the CLI turns them into a red line
and exit code 2; library callers catch them like any exception.
"""

from __future__ import annotations


class NerxError(Exception):
    """Base class of every error a user can cause and fix."""

    exit_code = 2

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None):
        self.message = message
        self.where = where
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.hint:
            text += f" (hint: {self.hint})"
        return text


class FormatError(NerxError):
    """Input data does not follow its format (bad JSON, wrong column count, bad tag...)."""


class InvalidDocumentError(NerxError):
    """A document breaks an invariant of the data model (offsets, relation indices...)."""


class UnknownFormatError(NerxError):
    """A format name is unknown, or a file's format cannot be detected."""


class DocumentMismatchError(NerxError):
    """Gold and predicted documents cannot be paired (missing id, different text)."""


class ModelError(NerxError):
    """A model cannot be built, loaded or run with the given settings."""


class ConfigError(NerxError):
    """Options that contradict each other or name things that do not exist."""


class NerxWarning(UserWarning):
    """Something worth a user's attention that does not stop the work (the command line
    prints it as a yellow line)."""
