"""Small parts of the camera app: latency histograms, --serve parsing, health states."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import numpy as np
import pytest

from deploy.serve import ResultServer, ResultState, parse_hostport
from deploy.stats import LatencyHistogram
from edgeft.errors import UserError


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
    server = ResultServer("127.0.0.1", 0, state).start()
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
        import time

        time.sleep(0.3)
        assert _get(f"{server.url}/health")[1]["status"] == "stale"
    finally:
        server.close()


def test_port_in_use_message():
    first = ResultServer("127.0.0.1", 0, ResultState())
    try:
        with pytest.raises(UserError, match="already in use") as info:
            ResultServer("127.0.0.1", first.port, ResultState())
        assert "\n" not in str(info.value)
    finally:
        first.close()
