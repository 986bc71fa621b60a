"""``edgeft export``."""

from __future__ import annotations

from edgeft.cli.build import add_command
from exporters.options import ExportOptions


def _run(opts: ExportOptions) -> None:
    from exporters.pipeline import export_bundle

    export_bundle(opts)


def register(app) -> None:
    """Add the command to ``app``."""
    add_command(
        app,
        "export",
        ExportOptions,
        _run,
        "Add ONNX / ONNX Runtime INT8 / TensorRT artifacts to a bundle, each checked against PyTorch.",
    )
