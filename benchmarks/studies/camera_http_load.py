"""Load on `edgeft camera --serve` while it classifies: bursts, idle connections, resets.

    python -m benchmarks.studies.camera_http_load BUNDLE [--requests 500] [--clients 50]
        [--idle 300] [--resets 100] [--out benchmarks/results/camera_http_load.json]

The camera runs as its own process (as a service would) on a looping video paced like a
camera (``--loop --realtime``), with ``--serve 127.0.0.1:0``. Then, in order:

1. **burst**: ``requests`` requests from ``clients`` concurrent clients, each on a new
   connection, over ``/latest``, ``/health``, ``/status.json``, ``/summary`` and ``HEAD``;
2. **idle**: ``idle`` connections opened and left idle (half of them having sent half a
   request), and while they are held, a second burst of ``requests // 5`` requests;
3. **resets**: ``resets`` clients that start reading ``/stream.mjpg`` or ``/latest`` and
   reset the connection (RST) mid-response;
4. a last burst, then SIGTERM.

Pass: no request fails or takes over 1 s, the camera classifies frames throughout
(frames advance in every phase), its thread count stays bounded (one HTTP thread whatever
the connection count), its stderr has no traceback and at most one line about client
disconnects, and it exits 0. Each idle connection is also timed until the server closes
it (its per-connection timeout).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks.studies import RESULTS

PATHS = [
    ("GET", "/latest"),
    ("GET", "/health"),
    ("GET", "/status.json"),
    ("GET", "/summary"),
    ("HEAD", "/latest"),
]
LIMIT_S = 1.0


def request(
    port: int, method: str, path: str, timeout: float = 5.0
) -> tuple[int | None, float, str]:
    """One request on a new connection: ``(status or None, seconds, error)``."""
    t = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path)
        r = conn.getresponse()
        r.read()
        return r.status, time.perf_counter() - t, ""
    except OSError as exc:
        return None, time.perf_counter() - t, f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()


def burst(port: int, n: int, clients: int) -> dict:
    """``n`` requests from ``clients`` concurrent clients; latency and failures."""
    jobs = [PATHS[i % len(PATHS)] for i in range(n)]
    with ThreadPoolExecutor(clients) as pool:
        res = list(pool.map(lambda j: request(port, *j), jobs))
    times = np.array([r[1] for r in res])
    failed = [
        f"{j[0]} {j[1]}: {r[0] or r[2]}" for j, r in zip(jobs, res, strict=True) if r[0] != 200
    ]
    return {
        "requests": n,
        "clients": clients,
        "failed": len(failed),
        "failures": failed[:5],
        "over_1s": int((times > LIMIT_S).sum()),
        "p50_ms": round(1e3 * float(np.median(times)), 2),
        "p99_ms": round(1e3 * float(np.percentile(times, 99)), 2),
        "max_ms": round(1e3 * float(times.max()), 2),
    }


def open_idle(port: int, n: int) -> list[socket.socket]:
    """``n`` idle connections; every other one has sent half a request and stalled."""
    socks = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        if i % 2:
            s.sendall(b"GET /latest HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no blank line: stalled
        socks.append(s)
    return socks


def wait_closed(socks: list[socket.socket], limit_s: float) -> dict:
    """Seconds until the server closed each idle connection (its idle timeout)."""
    t0, closed = time.monotonic(), []
    for s in socks:
        s.settimeout(max(0.01, limit_s - (time.monotonic() - t0)))
        try:
            while s.recv(4096):
                pass
            closed.append(time.monotonic() - t0)
        except OSError:
            pass
        s.close()
    return {
        "closed_by_server": len(closed),
        "of": len(socks),
        "closed_after_max_s": round(max(closed), 2) if closed else None,
    }


def reset_one(port: int, path: str) -> bool:
    """Start reading ``path`` and reset the connection (RST) mid-response."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        got = s.recv(64)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return bool(got)
    finally:
        s.close()  # with SO_LINGER 0: RST, not FIN


def threads_of(pid: int) -> int | None:
    try:
        return int(re.search(r"Threads:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1))
    except (OSError, AttributeError):
        return None


class Camera:
    """`edgeft camera --serve 127.0.0.1:0` in a subprocess, its stderr collected."""

    def __init__(self, bundle, video: Path, backend: str = "auto"):
        cmd = [
            sys.executable,
            "-m",
            "edgeft",
            "camera",
            str(bundle),
            "--source",
            str(video),
            "--loop",
            "--realtime",
            "--serve",
            "127.0.0.1:0",
            "--backend",
            backend,
            "--out",
            os.devnull,
        ]
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        self.err: list[str] = []
        threading.Thread(
            target=lambda: self.err.extend(ln.rstrip() for ln in self.proc.stderr), daemon=True
        ).start()
        self.port = self._port()

    def _port(self, timeout: float = 120.0) -> int:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for ln in list(self.err):
                if m := re.search(r"serving http://127\.0\.0\.1:(\d+)/", ln):
                    return int(m.group(1))
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"camera exited {self.proc.returncode}: {' | '.join(self.err[-3:])}"
                )
            time.sleep(0.05)
        raise RuntimeError("camera did not start serving")

    def frames(self) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        conn.request("GET", "/summary")
        frames = json.loads(conn.getresponse().read())["frames"]
        conn.close()
        return frames

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(30)
        time.sleep(0.3)
        return rc, "\n".join(self.err)


def run_load(
    bundle,
    video: Path,
    requests: int = 500,
    clients: int = 50,
    idle: int = 300,
    resets: int = 100,
    idle_wait_s: float = 15.0,
    backend: str = "auto",
) -> dict:
    """The four phases against one camera process (see the module notes); the report."""
    cam = Camera(bundle, video, backend)
    phases, threads = {}, []
    try:
        while cam.frames() < 5:
            time.sleep(0.1)
        threads.append(threads_of(cam.proc.pid))
        f0 = cam.frames()
        phases["burst"] = burst(cam.port, requests, clients)
        phases["burst"]["frames_during"] = (f1 := cam.frames()) - f0
        threads.append(threads_of(cam.proc.pid))
        socks = open_idle(cam.port, idle)
        time.sleep(0.5)
        threads.append(threads_of(cam.proc.pid))
        phases["idle"] = {
            "connections": idle,
            **burst(cam.port, max(1, requests // 5), max(1, clients // 5)),
        }
        threads.append(threads_of(cam.proc.pid))
        phases["idle"].update(wait_closed(socks, idle_wait_s))
        phases["idle"]["frames_during"] = (f2 := cam.frames()) - f1
        paths = ["/stream.mjpg", "/latest"]
        with ThreadPoolExecutor(10) as pool:
            got = list(pool.map(lambda i: reset_one(cam.port, paths[i % 2]), range(resets)))
        phases["resets"] = {"resets": resets, "got_data_before_reset": sum(got)}
        time.sleep(0.5)
        threads.append(threads_of(cam.proc.pid))
        phases["after"] = burst(cam.port, max(1, requests // 5), max(1, clients // 5))
        phases["resets"]["frames_during"] = cam.frames() - f2
        http_stats = _summary_http(cam.port)
    finally:
        rc, err = cam.stop()
    return {
        "phases": phases,
        "threads": threads,
        "exit_code": rc,
        "http": http_stats,
        "traceback": "Traceback" in err,
        "disconnect_lines": sum("closed its connection" in ln for ln in err.splitlines()),
        "stderr_lines": len(err.splitlines()),
        "stderr_tail": err.splitlines()[-12:],
    }


def _summary_http(port: int) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/summary")
    out = json.loads(conn.getresponse().read()).get("http", {})
    conn.close()
    return out


def verdict(report: dict) -> list[str]:
    """What failed (empty: pass)."""
    bad = []
    for name, ph in report["phases"].items():
        if ph.get("failed") or ph.get("over_1s"):
            bad.append(f"{name}: {ph.get('failed')} failed, {ph.get('over_1s')} over {LIMIT_S} s")
        if "frames_during" in ph and ph["frames_during"] <= 0:
            bad.append(f"{name}: the camera classified no frame meanwhile")
    if max(t or 0 for t in report["threads"]) - min(t or 0 for t in report["threads"]) > 2:
        bad.append(f"thread count grew: {report['threads']}")
    if report["traceback"] or report["disconnect_lines"] > 1 or report["exit_code"] != 0:
        bad.append(
            f"stderr/exit: traceback {report['traceback']}, {report['disconnect_lines']} "
            f"disconnect lines, exit {report['exit_code']}"
        )
    return bad


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--idle", type=int, default=300)
    ap.add_argument("--resets", type=int, default=100)
    ap.add_argument("--size", default="320x240", help="frame size WxH of the looping video")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--out", type=Path, default=RESULTS / "camera_http_load.json")
    ap.add_argument("--note", default="")
    a = ap.parse_args(argv)
    from benchmarks.studies.camera_overhead import make_video
    from edgeft.atomic import write_json_atomic
    from edgeft.bundle import Bundle
    from edgeft.platform.cpu import describe_cpu
    from edgeft.provenance import now_iso

    size = tuple(int(v) for v in a.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as td:
        video = make_video(Bundle.load(a.bundle), size, 100, Path(td) / "loop.avi")
        load0 = os.getloadavg()
        report = run_load(
            a.bundle, video, a.requests, a.clients, a.idle, a.resets, backend=a.backend
        )
    bad = verdict(report)
    report = {
        "benchmark": "camera_http_load",
        "created": now_iso(),
        "bundle": str(a.bundle),
        "cpu": describe_cpu(),
        "cores": os.cpu_count(),
        "loadavg_at_start": load0,
        "loadavg_at_end": os.getloadavg(),
        "note": a.note,
        "pass": not bad,
        "problems": bad,
        **report,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(a.out, report)
    for name, ph in report["phases"].items():
        print(f"{name:>7}: {json.dumps({k: v for k, v in ph.items() if k != 'failures'})}")
    print(
        f"threads {report['threads']}; http {report['http']}; exit {report['exit_code']}, "
        f"traceback {report['traceback']}: {'PASS' if not bad else 'FAIL: ' + '; '.join(bad)}"
    )
    print(f"wrote {a.out}")
    return report


if __name__ == "__main__":
    main()
