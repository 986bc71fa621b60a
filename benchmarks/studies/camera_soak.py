"""Soak: run `edgeft camera` for 10,000 frames from a looping file and watch its memory.

    python -m benchmarks.studies.camera_soak BUNDLE [--frames 10000] [--size 640x480] [--warmup 0.1]
        [--out benchmarks/results/camera_soak.json]

The camera runs as its own process (as a service would), with ``--loop``, ``--smooth 5``
and ``--serve 127.0.0.1:0`` (polled once a second, so the HTTP thread is exercised too),
JSON lines to a pipe this script reads. Its resident memory (VmRSS from
``/proc/PID/status``) is sampled every 0.25 s against the number of frames done.

Pass: after warm-up (the first ``--warmup`` share of frames), RSS never exceeds the
warm-up RSS by more than 5%. Also recorded: the least-squares slope of RSS over frames
after warm-up (KiB per 1000 frames), which shows a slow leak before it crosses 5%.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

from benchmarks.studies.camera_overhead import RESULTS, make_video


def rss_kib(pid: int) -> int | None:
    """Resident set size of ``pid`` in KiB (Linux), None once it has exited."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    m = re.search(r"VmRSS:\s+(\d+)\s+kB", text)
    return int(m.group(1)) if m else None


def soak(
    bundle_path: Path,
    frames: int,
    size: tuple[int, int],
    warmup: float,
    backend: str,
    note: str = "",
) -> dict:
    """Run the soak and return the report (see the module notes)."""
    from edgeft.bundle import Bundle
    from edgeft.provenance import now_iso

    bundle = Bundle.load(bundle_path)
    with tempfile.TemporaryDirectory() as td:
        video = make_video(bundle, size, 100, Path(td) / "loop.avi")
        cmd = [
            sys.executable,
            "-m",
            "edgeft.cli",
            "camera",
            str(bundle_path),
            "--source",
            str(video),
            "--loop",
            "--smooth",
            "5",
            "--serve",
            "127.0.0.1:0",
            "--max-frames",
            str(frames),
            "--backend",
            backend,
            "--summary",
            str(Path(td) / "summary.json"),
        ]
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        done = [0]
        err_lines: list[str] = []

        def read_out():
            for _ in proc.stdout:
                done[0] += 1

        def read_err():
            for line in proc.stderr:
                err_lines.append(line.rstrip())

        threading.Thread(target=read_out, daemon=True).start()
        threading.Thread(target=read_err, daemon=True).start()
        samples, polls, t0, last_poll = [], {"ok": 0, "failed": 0}, time.time(), 0.0
        while proc.poll() is None:
            rss = rss_kib(proc.pid)
            if rss is not None:
                samples.append((done[0], rss, round(time.time() - t0, 2)))
            if time.time() - last_poll > 1.0:
                last_poll = time.time()
                ok = _poll(err_lines)
                if ok is not None:  # None: the endpoint has not announced itself yet
                    polls["ok" if ok else "failed"] += 1
            time.sleep(0.25)
        proc.wait()
        time.sleep(0.2)
        summary_path = Path(td) / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
    if proc.returncode != 0:
        raise SystemExit(f"camera failed (exit {proc.returncode}): {' | '.join(err_lines[-3:])}")
    return {
        "benchmark": "camera_soak",
        "created": now_iso(),
        "bundle": str(bundle.path),
        "arch": bundle.arch,
        "input_size": list(bundle.preprocessing.size),
        "frame_size": f"{size[0]}x{size[1]}",
        "frames_requested": frames,
        "note": note,
        "loadavg_at_end": os.getloadavg(),
        "http_polls": polls,
        **analyse(samples, frames, warmup),
        "camera_summary": summary,
        # (frames done, RSS KiB, seconds): every sample went into the analysis; 400 are kept
        "samples": samples[:: max(1, len(samples) // 400)],
    }


def _poll(err_lines: list[str]) -> bool | None:
    url = next(
        (m.group(1) for ln in err_lines if (m := re.search(r"serving (http://\S+)/latest", ln))),
        None,
    )
    if url is None:  # not announced yet
        return None
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def analyse(samples, frames: int, warmup: float) -> dict:
    """Growth of RSS after warm-up: max and last over the warm-up value, and the slope."""
    warm_frames = int(frames * warmup)
    after = [(f, r) for f, r, _ in samples if f >= warm_frames]
    if len(after) < 3:
        return {"pass": False, "reason": "too few samples after warm-up"}
    base = after[0][1]
    f = np.array([a[0] for a in after], dtype=np.float64)
    r = np.array([a[1] for a in after], dtype=np.float64)
    slope = float(np.polyfit(f, r, 1)[0]) * 1000 if np.ptp(f) > 0 else 0.0
    growth_max = float(r.max() / base - 1)
    return {
        "warmup_frames": warm_frames,
        "rss_warmup_kib": int(base),
        "rss_max_kib": int(r.max()),
        "rss_last_kib": int(r[-1]),
        "growth_max": round(growth_max, 4),
        "growth_last": round(float(r[-1] / base - 1), 4),
        "slope_kib_per_1000_frames": round(slope, 2),
        "limit": 0.05,
        "pass": growth_max <= 0.05,
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--frames", type=int, default=10000)
    ap.add_argument("--size", default="640x480", help="frame size WxH of the looping video")
    ap.add_argument("--warmup", type=float, default=0.1, help="share of frames before the baseline")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--out", type=Path, default=RESULTS / "camera_soak.json")
    ap.add_argument("--note", default="", help="context to record (which bundle, machine state)")
    a = ap.parse_args(argv)
    size = tuple(int(v) for v in a.size.lower().split("x"))
    report = soak(a.bundle, a.frames, size, a.warmup, a.backend, a.note)
    from edgeft.atomic import write_json_atomic

    a.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(a.out, report)
    s = report.get("camera_summary") or {}
    print(
        f"{s.get('frames')} frames ({s.get('fps')} fps, {s.get('loops')} loops of the file); RSS after warm-up "
        f"{report.get('rss_warmup_kib')} KiB, max {report.get('rss_max_kib')} KiB "
        f"(+{100 * report.get('growth_max', 0):.2f}%), last {report.get('rss_last_kib')} KiB, slope "
        f"{report.get('slope_kib_per_1000_frames')} KiB/1000 frames: {'PASS' if report['pass'] else 'FAIL'} "
        f"(limit +5%); health polls {report['http_polls']}"
    )
    print(f"wrote {a.out}")
    return report


if __name__ == "__main__":
    main()
