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


def validation_message(exc, where: str) -> str:
    """One line from a pydantic ``ValidationError``: the first problem, with its field path.

    Args:
        exc: the ``pydantic.ValidationError``.
        where: what was validated (``bundle.json``, ``preprocessing``), prefixed to the path.
    """
    errors = exc.errors(include_url=False)
    if not errors:
        return f"{where}: invalid"
    first = errors[0]
    loc = ".".join(str(p) for p in first.get("loc", ()))
    field = f"{where}.{loc}" if loc else where
    got = first.get("input")
    shown = "" if first.get("type") == "missing" else f" (got {repr(got)[:60]})"
    more = f"; {len(errors) - 1} more problem(s)" if len(errors) > 1 else ""
    return f"{field}: {first.get('msg', 'invalid')}{shown}{more}"
