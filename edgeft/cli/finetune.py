"""``edgeft finetune``."""

from __future__ import annotations

from edgeft.cli.build import add_command
from edgeft.train.options import FinetuneOptions


def _run(opts: FinetuneOptions) -> None:
    from edgeft.console import set_quiet
    from edgeft.train.finetune import finetune

    set_quiet(opts.quiet)
    finetune(opts)


def register(app) -> None:
    """Add the command to ``app``."""
    add_command(
        app,
        "finetune",
        FinetuneOptions,
        _run,
        "Fine-tune a pretrained backbone with fastai and write a deployable bundle.",
    )
