"""``edgeft camera``."""

from __future__ import annotations

from deploy.options import CameraOptions
from edgeft.cli.build import add_command


def _run(opts: CameraOptions) -> None:
    from deploy.camera import run_camera

    run_camera(opts)


def register(app) -> None:
    """Add the command to ``app``."""
    add_command(
        app,
        "camera",
        CameraOptions,
        _run,
        "Classify a camera, stream or video live: JSON lines per frame, summary on exit.",
    )
