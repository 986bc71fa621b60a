"""Small parts of the camera app: latency histograms, outages, --serve parsing, the HTTP
server under resets, idle and half-open connections, HEAD and headers, health states, and
the runtime's refusal of empty frames and unknown channel orders."""

from __future__ import annotations

import http.client
import json
import socket
import struct
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from deploy.serve import ResultState, is_loopback, parse_hostport
from deploy.stats import LatencyHistogram, OutageLog
from deploy.web import WebServer
from edgeft.errors import UserError
from tests.camera_support import wait_for


def test_histogram_percentiles_match_numpy_within_half_a_percent():
    rng = np.random.default_rng(0)
    samples = rng.lognormal(mean=np.log(4e-3), sigma=0.6, size=20000)  # ~4 ms with a long tail
    h = LatencyHistogram()
    for s in samples:
        h.add(s)
    for q in (50, 90, 99):
        exact = np.percentile(samples, q, method="inverted_cdf")
        assert abs(h.percentile(q) / exact - 1) < 0.005, q
    assert h.n == 20000 and h.max == samples.max() and abs(h.mean - samples.mean()) < 1e-12
    s = h.summary()
    assert s["p50"] == pytest.approx(1e3 * np.median(samples), rel=0.005)
    assert h.counts.nbytes < 40_000  # constant memory, whatever the run length


def test_histogram_edges():
    h = LatencyHistogram()
    assert h.percentile(50) is None and h.summary()["mean"] is None
    for v in (0.0, 1e-9, 500.0):  # below the first bin and above the last
        h.add(v)
    assert h.n == 3 and h.max == 500.0 and h.percentile(100) <= 500.0


@pytest.mark.parametrize(
    "text,expected",
    [
        ("8080", ("127.0.0.1", 8080)),
        (":8080", ("127.0.0.1", 8080)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
        ("[::1]:9000", ("::1", 9000)),
        ("localhost:0", ("localhost", 0)),
    ],
)
def test_parse_hostport(text, expected):
    assert parse_hostport(text) == expected


@pytest.mark.parametrize("text", ["http", "host:", "1:70000", "a:b:c"])
def test_parse_hostport_errors(text):
    with pytest.raises(UserError, match="--serve"):
        parse_hostport(text)


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_health_states():
    state = ResultState(stale_after_s=0.2)
    reconnecting = [False]
    state.reconnecting_fn = lambda: reconnecting[0]
    server = WebServer("127.0.0.1", 0, state, log=print).start()
    try:
        assert server.host == "127.0.0.1" and server.port > 0
        assert _get(f"{server.url}/health") == (
            503,
            {"status": "starting", "last_result_age_s": None, "last_frame": None},
        )
        assert _get(f"{server.url}/latest")[0] == 503
        state.update({"frame": 7, "top": [{"label": "a", "prob": 1.0}]})
        code, body = _get(f"{server.url}/health")
        assert code == 200 and body["status"] == "ok" and body["last_frame"] == 7
        assert _get(f"{server.url}/latest") == (
            200,
            {"frame": 7, "top": [{"label": "a", "prob": 1.0}]},
        )
        reconnecting[0] = True
        assert _get(f"{server.url}/health")[1]["status"] == "reconnecting"
        reconnecting[0] = False
        time.sleep(0.3)
        assert _get(f"{server.url}/health")[1]["status"] == "stale"
    finally:
        server.close()


def test_port_in_use_message():
    first = WebServer("127.0.0.1", 0, ResultState(), log=print)
    try:
        with pytest.raises(UserError, match="already in use") as info:
            WebServer("127.0.0.1", first.port, ResultState(), log=print)
        assert "\n" not in str(info.value)
    finally:
        first.close()


@pytest.fixture
def served():
    """A WebServer fed a new frame every 30 ms (as the camera loop would), with a short idle
    timeout; yields it and its log lines."""
    logged: list[str] = []
    state = ResultState()
    stop = threading.Event()

    def feed():
        i = 3
        while not stop.is_set():
            record = {
                "frame": i,
                "top": [{"label": "red", "prob": 0.9}],
                "latency_ms": {"inference": 1.0},
            }
            state.update(record, np.full((48, 64, 3), i % 256, np.uint8))
            i += 1
            stop.wait(0.03)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    server = WebServer("127.0.0.1", 0, state, log=logged.append, idle_timeout=0.5).start()
    yield server, logged
    server.close()
    stop.set()
    feeder.join()


def _raw(port: int, request: bytes, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        return data


def test_head_and_neutral_server_header(served):
    server, _ = served
    for path in ("/latest", "/health", "/status.json", "/", "/app.js", "/stream.mjpg"):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        conn.request("HEAD", path)
        r = conn.getresponse()
        assert r.status == 200 and r.read() == b"", path
        assert r.getheader("Server") == "edgeft-camera", r.getheader("Server")
        conn.close()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("GET", "/latest")
    r = conn.getresponse()
    body = r.read()
    assert json.loads(body)["frame"] >= 3 and int(r.getheader("Content-Length")) == len(body)
    assert "Python" not in r.getheader("Server") and "Tornado" not in r.getheader("Server")
    conn.close()


def test_client_resets_are_counted_in_one_line(served):
    """Clients that reset (RST) mid-response: no traceback, one line, a count."""
    server, logged = served
    for i in range(30):
        s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        path = "/stream.mjpg" if i % 2 else "/latest"
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert s.recv(16)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        # a reset is noticed at the next frame sent; until then the viewer counts against
        # the cap of live viewers (a 9th would get 503)
        assert wait_for(lambda: server.stats["streams"] == 0, timeout=10), server.stats
    assert server.stats["disconnects"] >= 15, server.stats
    assert wait_for(lambda: server.stats["streams"] == 0, timeout=10)
    assert len([m for m in logged if "closed its connection" in m]) == 1, logged
    assert not [m for m in logged if "Traceback" in m or "rror" in m], logged
    assert _get(f"{server.url}/latest")[0] == 200  # and it goes on serving


def test_idle_and_half_open_connections_time_out_without_threads(served):
    """Idle connections cost no thread and are closed after the idle timeout (0.5 s here),
    while requests go on being answered at once."""
    server, _ = served
    threads_before = threading.active_count()
    socks = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(60)]
    for s in socks[::2]:
        s.sendall(b"GET /latest HTTP/1.1\r\nHost: x\r\n")  # half a request, then nothing
    t = time.monotonic()
    assert _get(f"{server.url}/health")[0] == 200
    assert time.monotonic() - t < 1.0
    assert threading.active_count() == threads_before  # one event-loop thread serves all
    t = time.monotonic()
    for s in socks:
        s.settimeout(5)
        assert s.recv(1) == b""  # closed by the server
        s.close()
    assert time.monotonic() - t < 3.0


def test_malformed_request_is_one_counted_error(served):
    server, logged = served
    reply = _raw(server.port, b"NOT HTTP AT ALL\r\n\r\n")
    assert reply == b"" or reply.startswith(b"HTTP/1.1 400")
    assert _get(f"{server.url}/health")[0] == 200
    assert all("Traceback" not in m for m in logged)


def test_stream_sends_jpeg_parts(served):
    server, _ = served
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("GET", "/stream.mjpg")
    r = conn.getresponse()
    assert r.getheader("Content-Type") == "multipart/x-mixed-replace; boundary=frame"
    data = b""
    while b"\xff\xd9" not in data:  # the end of the first JPEG
        data += r.read1(65536)
    conn.close()
    assert data.startswith(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: ")
    head, _, jpeg = data.partition(b"\r\n\r\n")
    assert jpeg.startswith(b"\xff\xd8")
    import cv2

    img = cv2.imdecode(
        np.frombuffer(jpeg[: jpeg.index(b"\xff\xd9") + 2], np.uint8), cv2.IMREAD_COLOR
    )
    assert img.shape == (48, 64, 3)  # the frame, annotated


def test_loopback_detection():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("no-such-host.invalid")


def test_outage_log():
    log = OutageLog()
    assert log.summary()["count"] == 0 and not log.ongoing
    log.begin(time.time() - 2.0)
    log.attempt()
    log.attempt()
    assert log.ongoing and "ongoing_since" in log.summary()
    o = log.end()
    assert o["attempts"] == 2 and 1.9 < o["length_s"] < 3.0 and o["recovered"]
    for _ in range(15):
        log.begin(None)
        log.end(recovered=False)
    s = log.summary()
    assert s["count"] == 16 and s["reconnect_attempts"] == 2 and len(s["recent"]) == OutageLog.KEEP


@pytest.mark.parametrize(
    "frame,order,needle",
    [
        (np.zeros((0, 0, 3), np.uint8), "RGB", "empty frame"),
        (np.zeros((8, 0, 3), np.uint8), "BGR", "empty frame"),
        (np.zeros((8, 8, 3), np.uint8), "XYZ", "channel_order must be 'RGB' or 'BGR'"),
    ],
)
def test_runtime_refuses_empty_frames_and_unknown_channel_orders(cam_bundle, frame, order, needle):
    """Issue 14, point 7: one line (UserError) instead of a classification."""
    from edgeft.runtime import Classifier

    with Classifier.load(cam_bundle) as clf, pytest.raises(UserError, match=None) as info:
        clf.classify(frame, channel_order=order)
    assert needle in str(info.value) and "\n" not in str(info.value)
