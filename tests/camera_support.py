"""Helpers for the runtime and camera tests: tiny bundles with ONNX artifacts, lossless
videos made from a bundle's validation images, and a local MJPEG stream server."""

from __future__ import annotations

import http.server
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from tests.conftest import tiny_bundle  # noqa: F401  (re-exported for the camera tests)

# sys.modules[name] = None makes `import name` raise ImportError: the runtime must not need these.
BLOCK_HEAVY = "import sys\nfor _m in ('torch', 'torchvision', 'fastai', 'timm'):\n    sys.modules[_m] = None\n"


def export_onnx(
    bundle: Path, int8: bool = False, folded: bool = False, check: bool = False, onnx: bool = True
) -> None:
    """Add ONNX artifacts with `edgeft export`: ``onnx``; ``onnx-int8`` with ``int8``;
    ``onnx-folded`` with ``folded``.

    ``check=False`` skips export's parity gate: on the tiny test bundles (two validation
    images per class) one flipped image is a 17-point drop, and parity is export's own test.
    """
    from tests.conftest import run_cli

    flags = [] if check else ["--no-check"]
    for extra in (
        [] if onnx else None,
        ["--int8"] if int8 else None,
        ["--fold-normalize"] if folded else None,
    ):
        if extra is None:
            continue
        proc = run_cli("export", bundle, *extra, *flags, "--quiet")
        assert proc.returncode == 0, proc.stderr[-2000:]


def write_lossless_video(path: Path, images_rgb: list[np.ndarray], fps: float = 10.0) -> Path:
    """Write RGB uint8 frames (all one size) as FFV1 in AVI and check they read back exactly.

    FFV1 is lossless and ships with opencv-python-headless's FFmpeg; MJPG or mp4v would
    change pixels (measured: up to 233 levels on noise) and so the predictions.
    """
    import cv2

    h, w = images_rgb[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), fps, (w, h))
    assert writer.isOpened(), "OpenCV cannot write FFV1 here"
    for img in images_rgb:
        writer.write(np.ascontiguousarray(img[..., ::-1]))
    writer.release()
    cap = cv2.VideoCapture(str(path))
    for i, img in enumerate(images_rgb):
        ok, frame = cap.read()
        assert ok and np.array_equal(frame[..., ::-1], img), f"frame {i} did not survive the codec"
    cap.release()
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MjpegServer:
    """An HTTP MJPEG camera on 127.0.0.1 (multipart/x-mixed-replace, as IP cameras serve),
    which a test can stop (closing live connections) and start again on the same port."""

    def __init__(self, port: int, size: int = 48, fps: float = 50.0):
        self.port, self.size, self.fps = port, size, fps
        self.httpd = None
        self.alive = threading.Event()

    def start(self) -> MjpegServer:
        import cv2

        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                while server.alive.is_set():
                    img = np.full((server.size, server.size, 3), (i * 7) % 256, np.uint8)
                    img[..., 2] = 200  # reddish
                    ok, buf = cv2.imencode(".jpg", img)
                    try:
                        self.wfile.write(
                            b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                            % len(buf)
                            + buf.tobytes()
                            + b"\r\n"
                        )
                    except OSError:
                        return
                    i += 1
                    time.sleep(1.0 / server.fps)
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)

            def log_message(self, *args):
                pass

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        self.alive.set()
        threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        self.alive.clear()  # ends the streaming handlers: clients see the stream drop
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"


def camera_proc(*args, env=None) -> subprocess.Popen:
    """Start `edgeft camera ...` in the background (text pipes)."""
    import os

    full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    return subprocess.Popen(
        [sys.executable, "-m", "edgeft", "camera", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
    )


class Lines:
    """Collect a Popen's stdout/stderr lines in background threads."""

    def __init__(self, proc):
        self.proc, self.out, self.err = proc, [], []
        for stream, sink in ((proc.stdout, self.out), (proc.stderr, self.err)):
            threading.Thread(
                target=lambda s=stream, k=sink: [k.append(ln.rstrip("\n")) for ln in s], daemon=True
            ).start()

    def has_err(self, text):
        return any(text in ln for ln in self.err)

    def records(self) -> list[dict]:
        import json

        return [json.loads(ln) for ln in list(self.out)]

    def finish(self, sig=signal.SIGTERM, timeout=30):
        if sig is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.proc.wait(timeout)
        time.sleep(0.2)  # let the reader threads drain
        return rc


def wait_for(predicate, timeout: float = 30.0, step: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return False


SYSTEM_PYTHON = "/usr/bin/python3"
RTSP_SERVER = Path(__file__).resolve().parent / "deploy" / "rtsp_server.py"
_probes: dict[str, str | None] = {}


def _system_python_reason(name: str, code: str, install: str) -> str | None:
    """None when the system python runs ``code``, else why not (a skip reason)."""
    if name not in _probes:
        import os

        if not os.path.exists(SYSTEM_PYTHON):
            _probes[name] = f"no {SYSTEM_PYTHON}"
        else:
            proc = subprocess.run(
                [SYSTEM_PYTHON, "-c", code], capture_output=True, text=True, timeout=60
            )
            _probes[name] = (
                None
                if proc.returncode == 0
                else (
                    f"{install} (run .ci/media-test-setup): {(proc.stderr.strip().splitlines() or ['?'])[-1]}"
                )
            )
    return _probes[name]


def rtsp_server_reason() -> str | None:
    """Why GStreamer's RTSP server with an H.264 encoder cannot run here (None: it can)."""
    code = (
        "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0')\n"
        "from gi.repository import Gst, GstRtspServer; Gst.init(None)\n"
        "missing = [e for e in ('multifilesrc', 'pngdec', 'x264enc', 'rtph264pay') "
        "if Gst.ElementFactory.find(e) is None]\n"
        "assert not missing, f'GStreamer elements missing: {missing}'\n"
    )
    return _system_python_reason(
        "rtsp", code, "needs gir1.2-gst-rtsp-server-1.0, python3-gi and gstreamer1.0-plugins-*"
    )


def system_opencv_reason() -> str | None:
    """Why the system python has no OpenCV with GStreamer that decodes H.264 (None: it has)."""
    code = (
        "import cv2, gi; gi.require_version('Gst', '1.0'); from gi.repository import Gst; Gst.init(None)\n"
        "assert cv2.videoio_registry.hasBackend(cv2.CAP_GSTREAMER), 'OpenCV without GStreamer'\n"
        "assert Gst.ElementFactory.find('avdec_h264'), 'avdec_h264 missing (gstreamer1.0-libav)'\n"
    )
    return _system_python_reason("opencv", code, "needs python3-opencv and gstreamer1.0-libav")


class RtspServer:
    """GStreamer's RTSP server (``tests/deploy/rtsp_server.py``) in a system-python process
    serving PNG frames looped as lossless H.264 at ``rtsp://127.0.0.1:PORT/clip``; a test
    kills it (like a camera losing power) and starts it again on the same port."""

    def __init__(self, port: int, pattern: str, fps: int = 15):
        self.port, self.pattern, self.fps = port, pattern, fps
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/clip"

    def start(self, timeout: float = 20.0) -> RtspServer:
        self.proc = subprocess.Popen(
            [SYSTEM_PYTHON, str(RTSP_SERVER), str(self.port), self.pattern, "--fps", str(self.fps)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline()  # "ready PORT" once listening
        if not line.startswith("ready"):
            self.proc.kill()
            raise RuntimeError(f"RTSP server did not start: {self.proc.stderr.read()[-2000:]}")
        return self

    def kill(self) -> None:
        """SIGKILL: connections drop at once, as when a camera loses power."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


def write_frames(folder: Path, images_rgb: list[np.ndarray]) -> str:
    """Write RGB frames as ``00000.png ...`` (lossless); returns the printf pattern."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images_rgb):
        Image.fromarray(img).save(folder / f"{i:05d}.png")
    return str(folder / "%05d.png")
