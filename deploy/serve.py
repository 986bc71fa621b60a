"""What ``--serve`` shows: the latest result, the loop's health, and the live view's numbers.

The camera loop writes into :class:`ResultState` (one reference swap per frame under a
lock); the HTTP server (:mod:`deploy.web`) reads from it in its own thread. Endpoints:

* ``GET /latest``: the newest frame's record (as the JSON lines carry it); 503 before
  the first one.
* ``GET /health``: ``{"status": "ok"|"starting"|"stale"|"reconnecting"|"stopped", ...}``
  with the model in use (bundle, backend, sha256) and the last hot-swap event; 200 when
  ``ok``, 503 otherwise (a systemd watchdog, Docker HEALTHCHECK or load balancer can
  poll it).
* ``GET /summary``: the running summary (frames, FPS, latency percentiles, outages).
* ``GET /status.json``: what the live page polls: top-k, FPS over the last frames,
  per-stage latency, model and health.
* ``GET /`` (the live page) and ``GET /stream.mjpg`` (annotated frames): :mod:`deploy.web`.

Bound to 127.0.0.1 unless a host is given: the endpoint has no authentication, so
exposing it on a network is a deliberate ``--serve 0.0.0.0:8080`` (warned at start).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from edgeft.errors import UserError

DEFAULT_HOST = "127.0.0.1"
LATENCY_STAGES = ("capture", "preprocess", "inference", "post")


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


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` resolves to is a loopback one (unresolvable: False)."""
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


class ResultState:
    """What the endpoint serves; the camera loop updates it, handler threads read it."""

    def __init__(self, stale_after_s: float = 5.0):
        self._lock = threading.Lock()
        self.latest: dict | None = None
        self.latest_time: float | None = None
        self.image: np.ndarray | None = None  # the newest frame (as read), for /stream.mjpg
        self.stale_after_s = stale_after_s
        self.summary_fn: Callable[[], dict] | None = None
        self.model_fn: Callable[[], dict] = dict
        self.info: dict = {}
        self.stopped = False
        self.reconnecting_fn: Callable[[], bool] = lambda: False
        self._times: deque = deque(maxlen=30)
        self._latency: deque = deque(maxlen=30)

    def update(self, record: dict, image: np.ndarray | None = None) -> None:
        """The loop's newest record (and frame); keeps no copy, only references."""
        now = time.monotonic()
        with self._lock:
            self.latest, self.latest_time, self.image = record, now, image
            self._times.append(now)
            self._latency.append(record.get("latency_ms") or {})

    def snapshot(self) -> tuple[dict | None, float | None]:
        with self._lock:
            age = None if self.latest_time is None else time.monotonic() - self.latest_time
            return self.latest, age

    def frame(self) -> tuple[dict | None, np.ndarray | None]:
        with self._lock:
            return self.latest, self.image

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
        out.update(self.model_fn())
        return out

    def status(self) -> dict:
        """The live page's numbers: top-k, recent FPS and stage latency, model, health."""
        with self._lock:
            latest, times, lats = self.latest, list(self._times), list(self._latency)
        fps = (
            (len(times) - 1) / (times[-1] - times[0])
            if len(times) > 1 and times[-1] > times[0]
            else None
        )
        health = self.health()
        return {
            "frame": None if latest is None else latest.get("frame"),
            "ts": None if latest is None else latest.get("ts"),
            "top": [] if latest is None else latest.get("top", []),
            "fps": None if fps is None else round(fps, 2),
            "latency_ms": {
                k: round(float(np.mean([lt.get(k, 0.0) for lt in lats])), 3) if lats else None
                for k in LATENCY_STAGES
            },
            "age_ms": None if latest is None else latest.get("age_ms"),
            "dropped": None if latest is None else latest.get("dropped"),
            "status": health["status"],
            "health": health,
        }
