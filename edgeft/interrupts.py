"""Ctrl-C around commits: a short block that must not be cut in half (a few renames), and a
longer job (an export, a fine-tune) that must not commit after an interrupt it was given.

Why "remembered": Python swallows a KeyboardInterrupt raised while a finalizer or a weakref
callback runs ("Exception ignored in ..."), so a job can carry on after the user's Ctrl-C
and, without a record of the signal, commit what it built after it. The signal handler is
the main thread's, so one record serves the process; outside the main thread (where Python
never delivers signals) these guards do nothing.
"""

from __future__ import annotations

import contextlib
import signal

# Ctrl-C seen inside the current sigint_remembered() block
_SEEN: list = []


@contextlib.contextmanager
def sigint_handler(handler):
    """``handler`` for SIGINT during the block (outside the main thread: nothing to do)."""
    try:
        old = signal.signal(signal.SIGINT, handler)
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


@contextlib.contextmanager
def sigint_remembered():
    """For the block's duration, Ctrl-C raises KeyboardInterrupt as usual *and* is remembered,
    so that :func:`sigint_held` refuses to start a commit after one, even one a finalizer
    swallowed."""
    _SEEN.clear()

    def interrupted(signum, frame):
        _SEEN.append(signum)
        raise KeyboardInterrupt

    try:
        with sigint_handler(interrupted):
            yield
    finally:
        _SEEN.clear()


@contextlib.contextmanager
def sigint_held():
    """Delay Ctrl-C until the block (a few renames) is done, then raise it; an interrupt seen
    earlier in a :func:`sigint_remembered` block stops the job before the block starts."""
    if _SEEN:
        raise KeyboardInterrupt
    got = []
    try:
        with sigint_handler(lambda *a: got.append(a)):
            yield
    finally:
        if got:
            raise KeyboardInterrupt
