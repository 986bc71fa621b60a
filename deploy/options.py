"""``edgeft camera`` options, declared once (the CLI is derived from these fields)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeft.options import opt


@dataclass(kw_only=True)
class CameraOptions:
    """Everything ``edgeft camera`` takes."""

    bundle: Path | None = opt(
        None,
        "Bundle folder (with an exported artifact); or give --bundle-dir instead.",
        argument=True,
    )
    source: str = opt(
        help="Camera index or /dev/videoN, video file, rtsp://..., http://..., csi://N "
        "(Jetson), or gst:PIPELINE."
    )
    decoder: str = opt(
        "auto",
        "How rtsp:// is decoded: auto (GStreamer where OpenCV has it, else FFmpeg), gst "
        "(GStreamer only: never a silent CPU fallback), or ffmpeg.",
    )
    bundle_dir: Path | None = opt(
        None,
        "Folder whose `current` symlink names the bundle to run: a new target is verified "
        "beside the running model and swapped in without stopping (SIGHUP: check now).",
    )
    watch_interval: float = opt(2.0, "Seconds between checks of --bundle-dir's `current`.")
    probation: int = opt(
        30,
        "Frames a swapped-in bundle is health-checked for (non-finite outputs, confidence "
        "collapse) before the previous one is released; 0: no check.",
    )
    backend: str = opt(
        "auto",
        "auto (best this machine runs) or a backend name (`edgeft bench --help` lists them).",
    )
    device: str = opt("auto", "auto, cpu or cuda.")
    threads: int | None = opt(None, "Inference threads on the CPU (default: the engine's).")
    top_k: int = opt(3, "Labels per frame.")
    smooth: int = opt(1, "Average probabilities over the last N frames (1: off).")
    roi: str | None = opt(None, "Classify only this region: x,y,w,h in pixels.")
    out: Path | None = opt(None, "JSON lines file (default: stdout).")
    video: Path | None = opt(None, "Also write an annotated video (.mp4/.avi/.mkv).")
    serve: str | None = opt(
        None,
        "HTTP at HOST:PORT (or PORT: 127.0.0.1): live page at /, /stream.mjpg, /status.json, "
        "/latest, /health, /summary.",
    )
    max_frames: int = opt(0, "Stop after N frames (0: run until the source ends or a signal).")
    loop: bool = opt(False, "Restart a video file at its end.")
    realtime: bool = opt(
        False,
        "Pace a video file at its frame rate, dropping stale frames like a camera "
        "(default: every frame).",
    )
    retries: int = opt(0, "Reconnect attempts per stream loss before giving up (0: forever).")
    summary: Path | None = opt(None, "Write the exit summary as JSON here too.")
    trust_modified: bool = opt(
        False, "Run an artifact whose sha256 differs from its record (warned) instead of refusing."
    )
