"""Errors a user can fix, and the exit codes the CLI maps them to.

A :class:`UserError` is printed as one line (what is wrong and what to do) with no
traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

EXIT_USER = 2
EXIT_PARITY = 3
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """A problem with the user's input or machine; the message says what to do."""

    exit_code = EXIT_USER


class ParityError(UserError):
    """An exported or deployed model no longer answers like the trained one.

    The CLI exits with :data:`EXIT_PARITY` so a CI can gate a deployment on it.
    """

    exit_code = EXIT_PARITY

    def __init__(self, message: str, figures: dict | None = None):
        super().__init__(message)
        self.figures = figures or {}
