"""``--serve HOST:PORT``: a tiny HTTP endpoint with the latest result and the loop's health.

Endpoints (JSON):

* ``GET /latest``: the newest frame's record (as the JSON lines carry it); 503 before
  the first one.
* ``GET /health``: ``{"status": "ok"|"starting"|"stale"|"reconnecting"|"stopped", ...}``
  with frames, drops, reconnects and the age of the newest result; 200 when ``ok``, 503
  otherwise (a systemd watchdog, Docker HEALTHCHECK or load balancer can poll it).
* ``GET /summary``: the running summary (frames, FPS, latency percentiles).

Bound to 127.0.0.1 unless a host is given: the endpoint has no authentication, so
exposing it on a network is a deliberate ``--serve 0.0.0.0:8080``.
"""

from __future__ import annotations

import errno
import json
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from edgeft.errors import UserError

DEFAULT_HOST = "127.0.0.1"


def parse_hostport(text: str) -> tuple[str, int]:
    """``PORT``, ``:PORT``, ``HOST:PORT`` or ``[IPv6]:PORT`` -> ``(host, port)``.

    Raises:
        UserError: no valid port (0-65535; 0 picks a free one).
    """
    text = str(text).strip()
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    host = host.strip("[]") or DEFAULT_HOST
    try:
        value = int(port)
    except ValueError:
        raise UserError(
            f"--serve {text!r}: use HOST:PORT or PORT, e.g. --serve 127.0.0.1:8080"
        ) from None
    if not 0 <= value <= 65535:
        raise UserError(f"--serve {text}: port must be between 0 and 65535")
    return host, value


class ResultState:
    """What the endpoint serves; the camera loop updates it, handler threads read it."""

    def __init__(self, stale_after_s: float = 5.0):
        self._lock = threading.Lock()
        self.latest: dict | None = None
        self.latest_time: float | None = None
        self.stale_after_s = stale_after_s
        self.summary_fn: Callable[[], dict] | None = None
        self.info: dict = {}
        self.stopped = False
        self.reconnecting_fn: Callable[[], bool] = lambda: False

    def update(self, record: dict) -> None:
        with self._lock:
            self.latest = record
            self.latest_time = time.monotonic()

    def snapshot(self) -> tuple[dict | None, float | None]:
        with self._lock:
            age = None if self.latest_time is None else time.monotonic() - self.latest_time
            return self.latest, age

    def health(self) -> dict:
        latest, age = self.snapshot()
        if self.stopped:
            status = "stopped"
        elif self.reconnecting_fn():
            status = "reconnecting"
        elif latest is None:
            status = "starting"
        elif age is not None and age > self.stale_after_s:
            status = "stale"
        else:
            status = "ok"
        out = {
            "status": status,
            "last_result_age_s": None if age is None else round(age, 3),
            "last_frame": None if latest is None else latest.get("frame"),
        }
        out.update(self.info)
        return out


def _handler(state: ResultState):
    class Handler(BaseHTTPRequestHandler):
        server_version = "edgeft-camera"

        def do_GET(self):  # noqa: N802 (http.server's naming)
            path = self.path.split("?", 1)[0].rstrip("/") or "/"
            if path == "/health":
                body = state.health()
                self._send(200 if body["status"] == "ok" else 503, body)
            elif path == "/latest":
                latest, _ = state.snapshot()
                self._send(200, latest) if latest else self._send(503, {"error": "no result yet"})
            elif path == "/summary":
                self._send(200, state.summary_fn() if state.summary_fn else {})
            elif path == "/":
                self._send(200, {"endpoints": ["/latest", "/health", "/summary"]})
            else:
                self._send(
                    404,
                    {
                        "error": f"no such endpoint {path}",
                        "endpoints": ["/latest", "/health", "/summary"],
                    },
                )

        def _send(self, code: int, body: dict) -> None:
            data = (json.dumps(body) + "\n").encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):  # keep request logs out of the service's stderr
            pass

    return Handler


class ResultServer:
    """``ThreadingHTTPServer`` in a daemon thread.

    Args:
        host, port: where to listen (port 0: any free port, see :attr:`port`).
        state: the :class:`ResultState` to serve.

    Raises:
        UserError: the port is in use, the host is not an address of this machine, or
            the port needs privileges.
    """

    def __init__(self, host: str, port: int, state: ResultState):
        self.state = state
        server_cls = ThreadingHTTPServer
        if ":" in host:  # an IPv6 address

            class server_cls(ThreadingHTTPServer):  # noqa: N801
                address_family = socket.AF_INET6

        try:
            self.httpd = server_cls((host, port), _handler(state))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UserError(
                    f"cannot serve on {host}:{port}: the port is already in use; choose another "
                    "with --serve HOST:PORT (or stop the other service)"
                ) from None
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise UserError(
                    f"cannot serve on {host}:{port}: permission denied (ports below 1024 need "
                    "privileges); choose a port above 1024"
                ) from None
            raise UserError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
        self.httpd.daemon_threads = True
        self.host, self.port = self.httpd.server_address[:2]
        self._thread = threading.Thread(
            target=self.httpd.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="edgeft-serve",
            daemon=True,
        )

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> ResultServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self.state.stopped = True
        if self._thread.is_alive():  # shutdown() waits for serve_forever, so only when running
            self.httpd.shutdown()
        self.httpd.server_close()
