"""``edgeft compare``."""

from __future__ import annotations

from edgeft.cli.build import add_command
from edgeft.train.compare_options import CompareOptions


def _run(opts: CompareOptions) -> None:
    from edgeft.train.compare import run_compare

    run_compare(opts, opts.out)


def register(app) -> None:
    """Add the command to ``app``."""
    add_command(
        app,
        "compare",
        CompareOptions,
        _run,
        "Train one model per strategy on the same split and budget, and compare them.",
    )
