"""The ``edgeft`` command line: one module per command, each deriving its options from the
command's options dataclass (:mod:`edgeft.cli.build`) and calling one library function.

User errors (:class:`edgeft.errors.UserError`) print one line and exit non-zero; parity
failures exit 3; anything else is a bug and keeps its traceback. Importing this package
imports typer and the options modules only: ``edgeft --help`` works without torch, fastai,
ONNX Runtime, OpenCV or TensorRT.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from edgeft.errors import EXIT_INTERRUPTED, UserError
from edgeft.images import set_max_pixels

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Fine-tune an ImageNet CNN on a small dataset and ship it to edge hardware you can trust.",
    pretty_exceptions_enable=False,
)


@app.callback()
def _global(
    max_pixels: Annotated[
        int | None,
        typer.Option(
            "--max-pixels",
            help="Largest image (width x height) any command decodes; bigger files are skipped "
            "or refused (default 64000000, or $EDGEFT_MAX_PIXELS).",
        ),
    ] = None,
):
    """Fine-tune an ImageNet CNN on a small dataset and ship it to edge hardware you can trust."""
    set_max_pixels(max_pixels)


def _register() -> None:
    from edgeft.cli import bench, camera, compare, env, export, finetune, predict

    for module in (finetune, predict, export, bench, camera, compare, env):
        module.register(app)


_register()


def main() -> None:
    """Console entry point: run the app, turning user errors into one line and an exit code."""
    try:  # typer >= 0.20 vendors click as typer._click
        from typer._click import exceptions as click_exc
    except ImportError:  # pragma: no cover - older typer on plain click
        from click import exceptions as click_exc

    try:
        # standalone_mode=False lets UserError through to us; typer then returns exit
        # codes (130 for Ctrl-C) instead of calling sys.exit itself.
        rv = app(standalone_mode=False)
    except UserError as exc:
        typer.echo(f"edgeft: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        rv = EXIT_INTERRUPTED
    except click_exc.ClickException as exc:  # bad usage: click's own message, exit 2
        exc.show()
        sys.exit(exc.exit_code)
    except typer.Abort:
        rv = EXIT_INTERRUPTED
    if rv == EXIT_INTERRUPTED:
        typer.echo("edgeft: interrupted; nothing half-written was kept", err=True)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
