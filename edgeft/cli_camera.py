"""``edgeft camera``: registered on the main app by :mod:`edgeft.cli` (light imports only)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add the ``camera`` command to ``app``."""

    @app.command()
    def camera(
        bundle: Path = typer.Argument(..., help="Bundle folder (with an exported artifact)."),
        source: str = typer.Option(
            ...,
            "--source",
            help="Camera index or /dev/videoN, video file, rtsp://..., "
            "http://..., csi://N (Jetson), or gst:PIPELINE.",
        ),
        backend: str = typer.Option(
            "auto",
            help="auto (best this machine runs), trt-int8, trt-fp16, onnx-int8, "
            "onnx, onnx-folded or torch.",
        ),
        device: str = typer.Option("auto", help="auto, cpu or cuda."),
        threads: int | None = typer.Option(
            None, help="Inference threads on the CPU (default: the engine's)."
        ),
        top_k: int = typer.Option(3, help="Labels per frame."),
        smooth: int = typer.Option(
            1, help="Average probabilities over the last N frames (1: off)."
        ),
        roi: str | None = typer.Option(None, help="Classify only this region: x,y,w,h in pixels."),
        out: Path | None = typer.Option(None, help="JSON lines file (default: stdout)."),
        video: Path | None = typer.Option(
            None, help="Also write an annotated video (.mp4/.avi/.mkv)."
        ),
        serve: str | None = typer.Option(
            None, help="HTTP endpoint with /latest and /health at HOST:PORT (or PORT: 127.0.0.1)."
        ),
        max_frames: int = typer.Option(
            0, help="Stop after N frames (0: run until the source ends or a signal)."
        ),
        loop: bool = typer.Option(False, help="Restart a video file at its end."),
        realtime: bool = typer.Option(
            False,
            help="Pace a video file at its frame rate, dropping stale frames "
            "like a camera (default: every frame).",
        ),
        retries: int = typer.Option(
            0, help="Reconnect attempts per stream loss before giving up (0: forever)."
        ),
        summary: Path | None = typer.Option(None, help="Write the exit summary as JSON here too."),
    ):
        """Classify a camera, stream or video live: JSON lines per frame, summary on exit."""
        from deploy.camera import CameraOptions, run_camera

        run_camera(
            CameraOptions(
                bundle=bundle,
                source=source,
                backend=backend,
                device=device,
                threads=threads,
                top_k=top_k,
                smooth=smooth,
                roi=roi,
                out=out,
                video=video,
                serve=serve,
                max_frames=max_frames,
                loop=loop,
                realtime=realtime,
                retries=retries,
                summary=summary,
            )
        )
