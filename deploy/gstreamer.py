"""GStreamer: the pipelines edgeft builds (``csi://``, ``rtsp://``) and the ``--decoder`` choice.

``--decoder`` decides how an ``rtsp://`` source is decoded:

* ``auto`` (default): the GStreamer pipeline where OpenCV has GStreamer (JetPack's
  OpenCV: hardware decoding with ``nvv4l2decoder`` on a Jetson), falling back to FFmpeg
  if the pipeline does not open (e.g. an H.265 camera without ``codec=h265``);
* ``gst``: the GStreamer pipeline or nothing (one line when OpenCV has no GStreamer, or
  the pipeline does not open): what a Jetson service wants, so that it never silently
  decodes on the CPU;
* ``ffmpeg``: OpenCV's FFmpeg backend over TCP with low-delay flags (pip's OpenCV has
  only this one).

The decoder that opened the source is recorded (:attr:`deploy.sources.Source.decoder`)
and reported in the start-up line and the summary.
"""

from __future__ import annotations

import re

from edgeft.errors import UserError

DECODERS = ("auto", "gst", "ffmpeg")
APPSINK = "appsink drop=true max-buffers=1 sync=false"


def check_decoder(decoder: str) -> str:
    """Validate ``--decoder``.

    Raises:
        UserError: not one of :data:`DECODERS`.
    """
    if decoder not in DECODERS:
        raise UserError(f"--decoder {decoder!r}: use one of {', '.join(DECODERS)}")
    return decoder


def rtsp_pipeline(
    url: str, latency_ms: int = 0, codec: str = "h264", jetson: bool = False, tcp: bool = True
) -> str:
    """GStreamer pipeline for an RTSP camera, decoding in hardware on a Jetson.

    Args:
        url: the ``rtsp://`` URL (credentials included if the camera needs them).
        latency_ms: ``rtspsrc`` jitter buffer; 0 gives the newest frame at once.
        codec: ``h264`` or ``h265``.
        jetson: decode with ``nvv4l2decoder`` (NVDEC) instead of libav's software decoder.
        tcp: force RTSP over TCP (no smeared frames from UDP loss).

    Raises:
        UserError: an unsupported codec.
    """
    if codec not in ("h264", "h265"):
        raise UserError(f"RTSP codec {codec!r} is not supported: use codec=h264 or codec=h265")
    depay, parse = f"rtp{codec}depay", f"{codec}parse"
    proto = " protocols=tcp" if tcp else ""
    src = f'rtspsrc location="{url}" latency={latency_ms}{proto} ! {depay} ! {parse} ! '
    if jetson:
        dec = "nvv4l2decoder ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! "
    else:
        dec = f"avdec_{codec} ! videoconvert ! "
    return src + dec + f"video/x-raw,format=BGR ! {APPSINK}"


def csi_pipeline(
    sensor_id: int = 0,
    width: int = 1280,
    height: int = 720,
    fps: int = 30,
    flip: int = 0,
    out_width: int | None = None,
    out_height: int | None = None,
) -> str:
    """GStreamer pipeline for a Jetson CSI camera (Argus) delivering BGR frames to OpenCV.

    ``nvarguscamerasrc`` captures NV12 into NVMM (GPU) memory; ``nvvidconv`` flips/scales
    there and converts to BGRx in CPU memory; ``videoconvert`` drops the x for OpenCV.

    Args:
        sensor_id: the CSI port (``csi://N``).
        width, height, fps: sensor mode to request.
        flip: ``nvvidconv flip-method`` (0 none, 2 rotate 180, 4 horizontal flip, ...).
        out_width, out_height: scale to this size on the GPU (default: no scaling).
    """
    ow, oh = out_width or width, out_height or height
    return (
        f"nvarguscamerasrc sensor-id={sensor_id} ! "
        f"video/x-raw(memory:NVMM),width={width},height={height},framerate={fps}/1,format=NV12 ! "
        f"nvvidconv flip-method={flip} ! video/x-raw,width={ow},height={oh},format=BGRx ! "
        f"videoconvert ! video/x-raw,format=BGR ! {APPSINK}"
    )


def gstreamer_available() -> bool:
    """Whether this OpenCV can run GStreamer pipelines (pip's opencv-python cannot)."""
    try:
        import cv2
    except ImportError:
        return False
    try:
        return bool(cv2.videoio_registry.hasBackend(cv2.CAP_GSTREAMER))
    except AttributeError:  # very old OpenCV: read the build report
        m = re.search(r"GStreamer:\s*(\S+)", cv2.getBuildInformation())
        return bool(m and m.group(1).upper() == "YES")


def unreachable(url: str, timeout: float = 2.0) -> str | None:
    """Why nothing listens at an ``rtsp://`` URL's host and port (None: something does).

    Checked before GStreamer opens the URL: OpenCV 4.6's GStreamer backend does not clean
    up a pipeline whose ``rtspsrc`` failed to connect ("Trying to dispose element ... in
    READY instead of the NULL state"), and after a few such failures the next open hangs
    for good (seen with Debian's python3-opencv 4.6 while a camera was down). A refused
    TCP connection is answered here instead, and the reconnect backoff goes on.
    """
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    port = parts.port or (322 if parts.scheme == "rtsps" else 554)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"{parts.hostname}:{port}: {exc.strerror or exc}"
