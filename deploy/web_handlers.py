"""The request handlers of ``--serve`` (:mod:`deploy.web` runs them): JSON endpoints, the
static live page, and ``/stream.mjpg``."""

from __future__ import annotations

import asyncio
import json
import time

import tornado.web
from tornado.iostream import StreamClosedError

MAX_STREAMS = 8
SERVER_NAME = "edgeft-camera"
ENDPOINTS = ["/", "/stream.mjpg", "/status.json", "/latest", "/health", "/summary"]
BOUNDARY = "frame"
# Without new frames (the source is down) the last one is sent again this often: a viewer
# that went away is then noticed (and its slot freed) even while nothing new is shown.
KEEPALIVE_S = 1.0


def dumps(body) -> bytes:
    """JSON for a response body (NaN refused: the JSON lines never carry it either)."""
    return (json.dumps(body, allow_nan=False) + "\n").encode()


class _Base(tornado.web.RequestHandler):
    """Neutral headers, HEAD like GET, counted disconnects, errors as one line."""

    def initialize(self, web) -> None:
        self.web = web

    def set_default_headers(self) -> None:
        self.set_header("Server", SERVER_NAME)  # replaces "TornadoServer/x.y"
        self.set_header("Cache-Control", "no-store")

    def compute_etag(self) -> None:  # live data: nothing for a client to revalidate
        return None

    def on_finish(self) -> None:
        self.web.stats["requests"] += 1

    def on_connection_close(self) -> None:
        self.web.note("disconnects", "a client closed its connection before its response ended")

    def send_json(self, code: int, body) -> None:
        self.set_status(code)
        self.set_header("Content-Type", "application/json")
        self.finish(dumps(body))

    def write_error(self, status_code: int, **kwargs) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(dumps({"error": self._reason, "endpoints": ENDPOINTS}))

    def log_exception(self, typ, value, tb) -> None:
        if isinstance(value, tornado.web.HTTPError):
            return
        where = f"{self.request.method} {self.request.path}"
        self.web.note("errors", f"{where} failed: {typ.__name__}: {value}")

    def head(self, *args):
        return self.get(*args)


class Health(_Base):
    def get(self):
        body = self.web.state.health()
        self.send_json(200 if body["status"] == "ok" else 503, body)


class Latest(_Base):
    def get(self):
        latest, _ = self.web.state.snapshot()
        if latest is None:
            self.send_json(503, {"error": "no result yet"})
        else:
            self.send_json(200, latest)


class Summary(_Base):
    def get(self):
        fn = self.web.state.summary_fn
        self.send_json(200, fn() if fn else {})


class Status(_Base):
    def get(self):
        self.send_json(200, self.web.state.status())


class Page(_Base):
    def get(self):
        path = self.request.path if self.request.path != "/index.html" else "/"
        page = self.web.page(path)
        if page is None:
            self.send_json(404, {"error": "the live page is not installed", "endpoints": ENDPOINTS})
            return
        body, ctype = page
        self.set_header("Content-Type", ctype)
        self.set_header("Cache-Control", "no-cache")
        self.finish(body)


class NotFound(_Base):
    def prepare(self):
        self.send_json(
            404, {"error": f"no such endpoint {self.request.path}", "endpoints": ENDPOINTS}
        )


class Stream(_Base):
    """``multipart/x-mixed-replace`` JPEG frames: what an ``<img>`` tag plays live."""

    async def get(self):
        web = self.web
        if web.stats["streams"] >= MAX_STREAMS:
            self.send_json(503, {"error": f"at most {MAX_STREAMS} live viewers at a time"})
            return
        self.set_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        if self.request.method == "HEAD":
            self.finish()
            return
        web.stats["streams"] += 1
        try:
            await self._send_frames(web)
        except StreamClosedError:
            self.on_connection_close()
        finally:
            web.stats["streams"] -= 1

    async def _send_frames(self, web) -> None:
        last, interval, sent = None, 1.0 / max(0.1, web.stream_fps), time.monotonic()
        while not web.stopping and not self.request.connection.stream.closed():
            fid, jpeg = web.jpeg(after=last)
            if jpeg is None and last is not None and time.monotonic() - sent > KEEPALIVE_S:
                fid, jpeg = web.jpeg(after=None)  # no new frame (source down): the last again
            if jpeg is None:
                await asyncio.sleep(0.02)
                continue
            part = b"--%s\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % (
                BOUNDARY.encode(),
                len(jpeg),
            )
            self.write(part + jpeg + b"\r\n")
            await self.flush()  # waits until sent: a slow viewer gets fewer frames
            last, sent = fid, time.monotonic()
            await asyncio.sleep(interval)
        if not self.request.connection.stream.closed():
            self.finish()

    def on_connection_close(self) -> None:
        if not self.web.stopping:
            super().on_connection_close()


def make_app(web) -> tornado.web.Application:
    """The Tornado application for a :class:`deploy.web.WebServer`."""
    args = {"web": web}
    routes = [
        (r"/health/?", Health, args),
        (r"/latest/?", Latest, args),
        (r"/summary/?", Summary, args),
        (r"/status\.json", Status, args),
        (r"/stream\.mjpg", Stream, args),
        (r"/(?:index\.html|app\.js|style\.css)?", Page, args),
    ]
    return tornado.web.Application(
        routes,
        default_handler_class=NotFound,
        default_handler_args=args,
        log_function=lambda _handler: None,  # no access log: a camera service logs frames
        compress_response=False,
    )
