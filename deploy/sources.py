"""Camera sources: parse ``--source``, build GStreamer pipelines, open ``cv2.VideoCapture``.

Accepted forms (``parse_source``):

=========================  ==============================================================
``0``, ``/dev/video0``     V4L2 camera (USB, or a CSI sensor exposed through V4L2)
``clip.mp4``, ``file://``  a video file (FFmpeg); ends at end of file unless looped
``rtsp://…``, ``rtsps://`` network camera: GStreamer (hardware decode) where OpenCV has it,
                           else FFmpeg over TCP with low-delay flags (``--decoder``,
                           :mod:`deploy.gstreamer`)
``http://…``, ``https://`` MJPEG/HTTP camera or a served video (FFmpeg)
``csi://0``                Jetson CSI camera through ``nvarguscamerasrc`` (needs GStreamer)
``gst:PIPELINE``           any GStreamer pipeline ending in (or given) an ``appsink``
=========================  ==============================================================

Cameras and files take query options: ``csi://0?width=1920&height=1080&fps=30&flip=2``,
``/dev/video0?width=1280&height=720&fps=30``, ``rtsp://host/stream?codec=h265`` (the
``codec`` and ``latency`` keys are ours and are removed from the URL).

The pipelines drop stale buffers at the sink (``drop=true max-buffers=1 sync=false``):
the camera loop wants the newest frame, not a queue of old ones (the "seconds of RTSP
lag" users of other stacks report come from such queues).
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from deploy.gstreamer import (
    APPSINK,
    check_decoder,
    csi_pipeline,
    gstreamer_available,
    rtsp_pipeline,
    unreachable,
)
from edgeft.errors import UserError

__all__ = [
    "APPSINK",
    "Source",
    "SourceError",
    "csi_pipeline",
    "gstreamer_available",
    "open_capture",
    "parse_source",
    "rtsp_pipeline",
]

SCHEMES = ("rtsp", "rtsps", "http", "https", "csi", "file")
FORMS = "a camera index or /dev/videoN, a video file, rtsp://, http(s)://, csi://N or gst:PIPELINE"
# Low-delay FFmpeg options for network streams (OpenCV reads this variable at open):
# TCP avoids the smeared frames UDP loss gives; nobuffer/low_delay stop FFmpeg queueing.
FFMPEG_STREAM_OPTIONS = "rtsp_transport;tcp|fflags;nobuffer|flags;low_delay"
OPEN_TIMEOUT_MS = 10000
READ_TIMEOUT_MS = 10000


class SourceError(UserError):
    """A source that cannot be parsed or opened."""


@dataclass
class Source:
    """A parsed ``--source``.

    Attributes:
        spec: what the user passed.
        kind: ``device``, ``file``, ``stream`` (rtsp/http), ``csi`` or ``gst``.
        target: device path, file path, URL or GStreamer pipeline, as opened.
        live: frames come in real time (drop stale ones, reconnect on loss).
        options: width/height/fps for cameras, codec/latency for RTSP.
        pipeline: the GStreamer pipeline (csi, gst, and RTSP where GStreamer is used).
        decoder: the ``--decoder`` asked for (:mod:`deploy.gstreamer`).
        opened_with: what :func:`open_capture` opened it with: ``gstreamer`` or ``ffmpeg``
            (or ``v4l2``), None before the first open.
    """

    spec: str
    kind: str
    target: str
    live: bool
    options: dict = field(default_factory=dict)
    pipeline: str | None = None
    decoder: str = "auto"
    opened_with: str | None = None

    def describe(self) -> str:
        """Kind and target for log lines, with any URL password hidden."""
        return f"{self.kind} {_redact(self.target if self.kind != 'gst' else self.spec)}"


def _split_query(text: str) -> tuple[str, dict]:
    base, _, query = text.partition("?")
    return base, dict(parse_qsl(query, keep_blank_values=False))


def _int_opt(options: dict, key: str, default: int | None, spec: str) -> int | None:
    if key not in options:
        return default
    try:
        value = int(options[key])
    except ValueError:
        raise SourceError(f"source {spec}: {key}={options[key]!r} is not an integer") from None
    if value < 0:
        raise SourceError(f"source {spec}: {key} must not be negative")
    return value


def _is_jetson() -> bool:
    return Path("/etc/nv_tegra_release").exists()


def parse_source(spec: str, decoder: str = "auto") -> Source:
    """Parse a ``--source`` value (see the module table) and the ``--decoder`` for it.

    Raises:
        SourceError: unknown scheme, missing file or camera, bad option.
    """
    src = _parse(str(spec).strip())
    src.decoder = check_decoder(decoder)
    return src


def _parse(spec: str) -> Source:
    if not spec:
        raise SourceError(f"--source is empty: pass {FORMS}")
    if spec.startswith("gst:"):
        pipe = spec[4:].strip()
        if not pipe:
            raise SourceError(
                "gst: needs a pipeline, e.g. gst:videotestsrc ! videoconvert ! appsink"
            )
        if "appsink" not in pipe:
            pipe = f"{pipe} ! {APPSINK}"
        return Source(spec, "gst", pipe, True, pipeline=pipe)
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", spec)
    if m:
        scheme = m.group(1).lower()
        if scheme not in SCHEMES:
            raise SourceError(f"unknown source scheme {scheme}:// in {spec}: use {FORMS}")
        if scheme == "file":
            return _file_source(spec, spec[len("file://") :])
        if scheme == "csi":
            return _csi_source(spec)
        return _stream_source(spec, scheme)
    base, opts = _split_query(spec)
    if re.fullmatch(r"\d+", base) or re.fullmatch(r"/dev/video\d+", base):
        return _device_source(spec, base, opts)
    return _file_source(spec, spec)


def _device_source(spec: str, base: str, opts: dict) -> Source:
    index = int(base) if base.isdigit() else int(base[len("/dev/video") :])
    path = f"/dev/video{index}"
    if sys.platform.startswith("linux") and not Path(path).exists():
        found = sorted(str(p) for p in Path("/dev").glob("video*"))
        have = f"cameras here: {', '.join(found)}" if found else "no V4L2 camera is connected"
        raise SourceError(
            f"camera {path} does not exist ({have}); check the cable or `v4l2-ctl --list-devices`"
        )
    options = {k: _int_opt(opts, k, None, spec) for k in ("width", "height", "fps") if k in opts}
    return Source(spec, "device", path, True, options={"index": index, **options})


def _file_source(spec: str, path_text: str) -> Source:
    path = Path(path_text).expanduser()
    if not path.is_file():
        if path.exists():
            raise SourceError(f"source {spec} is not a file: pass {FORMS}")
        raise SourceError(f"source {spec} does not exist: pass {FORMS}")
    return Source(spec, "file", str(path), False)


def _csi_source(spec: str) -> Source:
    base, opts = _split_query(spec[len("csi://") :])
    if not base.isdigit():
        raise SourceError(
            f"{spec}: use csi://N with N the sensor id (csi://0), options like ?width=1920&height=1080"
        )
    o = {
        k: _int_opt(opts, k, d, spec)
        for k, d in (
            ("width", 1280),
            ("height", 720),
            ("fps", 30),
            ("flip", 0),
            ("out_width", None),
            ("out_height", None),
        )
    }
    pipe = csi_pipeline(
        int(base), o["width"], o["height"], o["fps"], o["flip"], o["out_width"], o["out_height"]
    )
    return Source(
        spec,
        "csi",
        f"csi sensor {base}",
        True,
        options={"sensor_id": int(base), **o},
        pipeline=pipe,
    )


def _stream_source(spec: str, scheme: str) -> Source:
    parts = urlsplit(spec)
    if not parts.hostname:
        raise SourceError(f"source {spec} has no host: e.g. rtsp://192.168.1.20:554/stream1")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    options = {}
    if scheme.startswith("rtsp"):
        options["codec"] = query.pop("codec", "h264")
        options["latency"] = _int_opt(query, "latency", 0, spec)
        query.pop("latency", None)
    url = urlunsplit(parts._replace(query=urlencode(query)))
    pipe = None
    if scheme.startswith("rtsp"):
        try:
            pipe = rtsp_pipeline(url, options["latency"], options["codec"], jetson=_is_jetson())
        except UserError as exc:
            raise SourceError(str(exc)) from None
    return Source(spec, "stream", url, True, options=options, pipeline=pipe)


_WHAT = {
    "device": "camera",
    "file": "video file",
    "stream": "stream",
    "csi": "CSI camera",
    "gst": "GStreamer pipeline",
}
_WHY = {
    "device": "busy, or not a capture device",
    "file": "not a video OpenCV's FFmpeg can decode",
    "stream": "unreachable, wrong path or credentials",
    "csi": "is nvargus-daemon running?",
    "gst": "check it with gst-launch-1.0",
}


def open_capture(src: Source):
    """Open ``src`` with OpenCV as its ``decoder`` says; returns an opened ``cv2.VideoCapture``
    and records what opened it in ``src.opened_with``.

    Raises:
        SourceError: OpenCV is missing, lacks GStreamer for a pipeline source (or for
            ``--decoder gst``), or cannot open the source.
    """
    try:
        import cv2
    except ImportError:
        raise SourceError(
            "OpenCV is not installed: pip install opencv-python-headless "
            "(on a Jetson, JetPack's OpenCV has GStreamer for csi:// sources)"
        ) from None
    use_gst = _use_gstreamer(src, gstreamer_available())
    down = unreachable(src.target) if use_gst and src.kind == "stream" else None
    if down:
        raise SourceError(f"cannot open stream {_redact(src.target)} ({down})")
    cap = cv2.VideoCapture(src.pipeline, cv2.CAP_GSTREAMER) if use_gst else None
    if cap is not None and not cap.isOpened() and src.kind == "stream" and src.decoder == "auto":
        cap.release()  # e.g. an H.265 camera without codec=h265: FFmpeg probes the codec itself
        cap = None
    src.opened_with = "gstreamer" if cap is not None else None
    if cap is None:
        cap = _open_direct(cv2, src)
    if not cap.isOpened():
        cap.release()
        shown = _redact(src.target if src.kind != "gst" else src.spec)
        via = " through GStreamer (--decoder gst)" if use_gst and src.kind == "stream" else ""
        raise SourceError(f"cannot open {_WHAT[src.kind]} {shown}{via} ({_WHY[src.kind]})")
    return cap


def _use_gstreamer(src: Source, gst: bool) -> bool:
    """Whether to open ``src`` through its GStreamer pipeline (see :mod:`deploy.gstreamer`)."""
    if src.kind in ("csi", "gst"):
        if not gst:
            raise SourceError(
                f"{src.spec} needs OpenCV built with GStreamer, and this one is not (see `edgeft env`): on a "
                "Jetson use JetPack's OpenCV (pip uninstall opencv-python-headless) or the deploy/ container"
            )
        if src.decoder == "ffmpeg":
            raise SourceError(
                f"--decoder ffmpeg cannot read {src.kind} sources: they are GStreamer pipelines"
            )
        return True
    if src.decoder == "gst":
        if src.pipeline is None:
            raise SourceError(
                "--decoder gst applies to rtsp:// sources; read anything else through GStreamer "
                "with --source gst:PIPELINE"
            )
        if not gst:
            raise SourceError(
                "--decoder gst needs OpenCV built with GStreamer, and this one is not (see `edgeft env`): "
                "on a Jetson use JetPack's OpenCV, on Debian python3-opencv"
            )
        return True
    return src.pipeline is not None and src.decoder == "auto" and gst


def _open_direct(cv2, src: Source):
    """Open a device, stream or file without GStreamer."""
    src.opened_with = "v4l2" if src.kind == "device" else "ffmpeg"
    if src.kind == "device":
        api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
        cap = cv2.VideoCapture(src.options["index"], api)
        if cap.isOpened():
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the driver queue is latency too
            for key, prop in (
                ("width", cv2.CAP_PROP_FRAME_WIDTH),
                ("height", cv2.CAP_PROP_FRAME_HEIGHT),
                ("fps", cv2.CAP_PROP_FPS),
            ):
                if src.options.get(key):
                    cap.set(prop, src.options[key])
        return cap
    if src.kind == "stream":
        os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", FFMPEG_STREAM_OPTIONS)
        timeouts = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            OPEN_TIMEOUT_MS,
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            READ_TIMEOUT_MS,
        ]
        return cv2.VideoCapture(src.target, cv2.CAP_FFMPEG, timeouts)
    return cv2.VideoCapture(src.target, cv2.CAP_FFMPEG)


def _redact(text: str) -> str:
    """Hide a password in a URL before it reaches a log line."""
    return re.sub(r"(://[^:/@]+):[^@/]+@", r"\1:***@", text)


def quiet_opencv() -> None:
    """Keep OpenCV's and FFmpeg's own log lines off stderr (errors are reported by us).

    Call before the first ``import cv2`` for full effect; OpenCV reads these variables
    at import.
    """
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
