"""``--serve``'s HTTP server: JSON endpoints, the live page and the annotated MJPEG stream.

Built on Tornado rather than the standard library's ``ThreadingHTTPServer``, which under
load lost requests to its listen backlog of 5, held one thread per connection (300 idle
clients: 300 threads, with no timeout) and printed a traceback for every client that
went away mid-response. Tornado is one small, well-kept, pure-Python package with no
dependencies of its own (about 2 MB installed; the runtime extra's ONNX Runtime and
OpenCV are 100 times that), and its single event-loop thread serves any number of
connections: idle ones cost a file descriptor, not a thread. What is set here:

* a listen backlog of :data:`BACKLOG` and at most :data:`MAX_CONNECTIONS` open
  connections (more are closed at once, counted);
* per-connection timeouts: a connection idle (or stuck sending its request) for
  ``idle_timeout`` seconds is closed;
* a client that disconnects mid-response is counted; the first one gets one log line,
  later ones only the count (``http.disconnects`` in the summary): no traceback;
* ``HEAD`` on every endpoint; a neutral ``Server`` header (no Python or Tornado version);
* at most :data:`deploy.web_handlers.MAX_STREAMS` MJPEG viewers (503 beyond), each sent at most
  ``stream_fps`` frames a second and at most one frame ahead (a slow viewer is sent fewer
  frames, never a growing queue). Each new frame is drawn and JPEG-encoded once, for all.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import threading
from importlib import resources

from deploy.serve import ResultState
from edgeft.errors import UserError

BACKLOG = 256
MAX_CONNECTIONS = 512
PAGES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}


class WebServer:
    """The HTTP server in its own thread (one asyncio event loop).

    Args:
        host, port: where to listen (port 0: any free port, see :attr:`port`).
        state: the :class:`deploy.serve.ResultState` to serve.
        log: one-line logger.
        roi: drawn on the streamed frames.
        stream_fps: most frames a second sent to each MJPEG viewer.
        idle_timeout: seconds before an idle connection is closed.

    Raises:
        UserError: the port is in use, the host is not an address of this machine, or
            the port needs privileges.
    """

    def __init__(
        self, host, port, state: ResultState, log, roi=None, stream_fps=15.0, idle_timeout=10.0
    ):
        from tornado.netutil import bind_sockets

        self.state, self.log, self.roi = state, log, roi
        self.stream_fps, self.idle_timeout = stream_fps, idle_timeout
        self.stats = {
            "requests": 0,
            "disconnects": 0,
            "errors": 0,
            "refused": 0,
            "streams": 0,
            "connections_max": 0,
        }
        self._noted: set[str] = set()
        self._jpeg: tuple[int | None, bytes | None] = (None, None)
        self._pages = _read_pages(log)
        try:
            self.sockets = bind_sockets(port, address=host, backlog=BACKLOG)
        except OSError as exc:
            raise UserError(_bind_message(host, port, exc)) from None
        self.host, self.port = host, self.sockets[0].getsockname()[1]
        self.stopping = False
        self._loop = self._stop_event = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edgeft-serve", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> WebServer:
        self._thread.start()
        self._started.wait(10)
        return self

    def close(self) -> None:
        """Stop serving: open streams end, connections close, the port is released."""
        self.state.stopped = True
        self.stopping = True
        if self._loop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop_event.set)
            self._thread.join(5)
        for s in self.sockets:
            s.close()

    def note(self, kind: str, message: str) -> None:
        """Count an event; log ``message`` the first time this ``kind`` happens."""
        self.stats[kind] = self.stats.get(kind, 0) + 1
        if kind not in self._noted:
            self._noted.add(kind)
            self.log(f"http: {message} (counted as http.{kind} in the summary; not logged again)")

    def summary(self) -> dict:
        return dict(self.stats)

    def jpeg(self, after: int | None) -> tuple[int | None, bytes | None]:
        """The newest frame, annotated, as JPEG (encoded once per frame for all viewers);
        ``(None, None)`` when there is no frame newer than ``after``."""
        record, image = self.state.frame()
        if record is None or image is None or record.get("frame") == after:
            return None, None
        fid = record.get("frame")
        if self._jpeg[0] != fid:
            import cv2
            import numpy as np

            from deploy.annotate import draw_overlay

            img = draw_overlay(np.array(image[..., :3], order="C"), record, self.roi)
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])
            self._jpeg = (fid, buf.tobytes() if ok else None)
        return self._jpeg

    def page(self, path: str) -> tuple[bytes, str] | None:
        """A static file of the live page, None where this install lacks them."""
        return (self._pages[path], PAGES[path][1]) if path in self._pages else None

    # -- the event-loop thread -------------------------------------------------------
    def _run(self) -> None:
        _quiet_tornado_logs(self)
        asyncio.run(self._main())

    async def _main(self) -> None:
        from tornado.httpserver import HTTPServer

        from deploy.web_handlers import make_app

        self._loop, self._stop_event = asyncio.get_running_loop(), asyncio.Event()
        web = self

        class Server(HTTPServer):
            def handle_stream(self, stream, address):
                if len(self._connections) >= MAX_CONNECTIONS:
                    stream.close()  # over the cap: refused at once, not queued
                    web.stats["refused"] += 1
                    return
                super().handle_stream(stream, address)
                web.stats["connections_max"] = max(
                    web.stats["connections_max"], len(self._connections)
                )

        server = Server(
            make_app(self),
            idle_connection_timeout=self.idle_timeout,
            body_timeout=self.idle_timeout,
            max_header_size=16384,
            max_body_size=65536,
        )
        server.add_sockets(self.sockets)
        self._started.set()
        await self._stop_event.wait()
        server.stop()
        with contextlib.suppress(asyncio.TimeoutError, OSError):
            await asyncio.wait_for(server.close_all_connections(), 3)


def _read_pages(log) -> dict[str, bytes]:
    """The live page's files (package data in ``deploy/web/``), read once."""
    try:
        return {
            path: (resources.files("deploy") / "web" / name).read_bytes()
            for path, (name, _) in PAGES.items()
        }
    except OSError:
        log("warning: the live page's files (deploy/web/) are missing from this install: / is off")
        return {}


class _CountingHandler(logging.Handler):
    """Tornado's own warnings (malformed requests, socket errors): counted, one line the
    first time, never a traceback."""

    def __init__(self, web: WebServer):
        super().__init__(logging.WARNING)
        self.web = web

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage().splitlines()[0] if record.getMessage() else record.name
        self.web.note("errors", f"{msg[:160]}")


def _quiet_tornado_logs(web: WebServer) -> None:
    logger = logging.getLogger("tornado")
    logger.handlers = [_CountingHandler(web)]
    logger.propagate = False
    logger.setLevel(logging.WARNING)


def _bind_message(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (
            f"cannot serve on {host}:{port}: the port is already in use; choose another "
            "with --serve HOST:PORT (or stop the other service)"
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return (
            f"cannot serve on {host}:{port}: permission denied (ports below 1024 need "
            "privileges); choose a port above 1024"
        )
    return f"cannot serve on {host}:{port}: {exc.strerror or exc}"
