"""Exceptions that the CLI turns into one-line messages and a non-zero exit (never a traceback)."""

from __future__ import annotations


class AcemusicError(Exception):
    """Base class: any error caused by user input or the environment, with a message fit to print as is."""


class InputError(AcemusicError):
    """A file or argument that cannot be used: names the offending input and the reason."""

    def __init__(self, source: object, reason: str) -> None:
        self.source = str(source)
        self.reason = reason
        super().__init__(f"{source}: {reason}")
