"""``edgeft env``."""

from __future__ import annotations

import json
from dataclasses import dataclass

import typer

from edgeft.cli.build import add_command
from edgeft.options import opt


@dataclass
class EnvOptions:
    """``edgeft env`` options."""

    as_json: bool = opt(False, "Print JSON.", "--json")


def _run(opts: EnvOptions) -> None:
    from edgeft.platform.env import collect

    info = collect()
    if opts.as_json:
        typer.echo(json.dumps(info, indent=2, default=str))
        return
    from rich.pretty import pprint

    pprint(info, expand_all=True)


def register(app) -> None:
    """Add the command to ``app``."""
    add_command(
        app,
        "env",
        EnvOptions,
        _run,
        "What is installed and usable here: torch, CUDA, ONNX Runtime providers, TensorRT, "
        "OpenCV, Jetson, the CPU's int8/bf16 instructions.",
    )
