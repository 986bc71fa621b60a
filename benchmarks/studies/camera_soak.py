"""Soak: run `edgeft camera` for 10,000 frames from a looping file and watch its memory.

    python -m benchmarks.studies.camera_soak BUNDLE [--frames 10000] [--size 640x480] [--warmup 0.1]
        [--swap-every 1000] [--out benchmarks/results/camera_soak.json]

The camera runs as its own process (as a service would), with ``--loop``, ``--smooth 5``
and ``--serve 127.0.0.1:0`` (polled once a second, so the HTTP thread is exercised too),
JSON lines to a pipe this script reads. Its resident memory (VmRSS from
``/proc/PID/status``) is sampled every 0.25 s against the number of frames done.

With ``--swap-every N`` the camera runs from ``--bundle-dir`` (two copies of the bundle)
and this script repoints its ``current`` link every N frames: each time the camera loads and
verifies the other copy beside the running one, swaps it in, health-checks it and releases
the old one (:mod:`deploy.swap`), so a leak per swap shows in the RSS. Every frame's id is
checked to follow the previous one (no frame lost across the swaps).

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
    swap_every: int = 0,
) -> dict:
    """Run the soak and return the report (see the module notes)."""
    from edgeft.bundle import Bundle

    bundle = Bundle.load(bundle_path)
    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        video = make_video(bundle, size, 100, td / "loop.avi")
        slots = _slots(bundle_path, td) if swap_every else None
        cmd = [
            sys.executable,
            "-m",
            "edgeft",
            "camera",
            *([] if slots else [str(bundle_path)]),
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
            str(td / "summary.json"),
        ]
        if slots:
            cmd += ["--bundle-dir", str(td / "models"), "--watch-interval", "0.25"]
        run = _Run(cmd)
        samples, polls, swaps = run.watch(slots, swap_every, td / "models")
        summary = (
            json.loads((td / "summary.json").read_text())
            if (td / "summary.json").exists()
            else None
        )
    if run.proc.returncode != 0:
        raise SystemExit(f"camera failed (exit {run.proc.returncode}): {' | '.join(run.err[-3:])}")
    return _report(
        bundle, size, frames, swap_every, swaps, run, note, polls, samples, warmup, summary
    )


def _report(bundle, size, frames, swap_every, swaps, run, note, polls, samples, warmup, summary):
    from edgeft.platform.cpu import describe_cpu
    from edgeft.provenance import now_iso

    # (a swap asked for as the run ends is never made: its sample is the exit, not a steady state)
    between = analyse_steady([x for x in run.steady if x[0] < frames]) if swap_every else None
    whole = analyse(samples, frames, warmup)
    if between is not None:  # two models in memory during each swap: judge between swaps
        whole = {
            **whole,
            "pass_whole_run": whole["pass"],
            "pass": between["pass"],
            "pass_rule": "RSS with one model loaded (just before each swap) within +5% of the first",
        }
    return {
        "benchmark": "camera_soak",
        "created": now_iso(),
        "bundle": str(bundle.path),
        "arch": bundle.arch,
        "input_size": list(bundle.preprocessing.size),
        "frame_size": f"{size[0]}x{size[1]}",
        "frames_requested": frames,
        "swap_every": swap_every,
        "swaps_requested": swaps,
        "frame_ids_continuous": run.continuous,
        "between_swaps": between,
        "note": note,
        "cpu": describe_cpu(),
        "cores": os.cpu_count(),
        "loadavg_at_end": os.getloadavg(),
        "http_polls": polls,
        **whole,
        "camera_summary": summary,
        # (frames done, RSS KiB, seconds): every sample went into the analysis; 400 are kept
        "samples": samples[:: max(1, len(samples) // 400)],
    }


def _slots(bundle_path: Path, td: Path) -> list[Path]:
    """Two copies of the bundle to swap between, and DIR/current pointing at the first."""
    import shutil

    slots = [td / "slot_a", td / "slot_b"]
    for s in slots:
        shutil.copytree(bundle_path, s)
    (td / "models").mkdir()
    (td / "models" / "current").symlink_to(slots[0])
    return slots


class _Run:
    """The camera process; its JSON lines counted (and their frame ids checked), stderr kept."""

    def __init__(self, cmd: list[str]):
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        self.done, self.err, self.continuous = 0, [], True
        threading.Thread(target=self._read_out, daemon=True).start()
        threading.Thread(
            target=lambda: self.err.extend(ln.rstrip() for ln in self.proc.stderr), daemon=True
        ).start()

    def _read_out(self) -> None:
        for line in self.proc.stdout:
            if json.loads(line).get("frame") != self.done:
                self.continuous = False  # a frame lost (or classified twice)
            self.done += 1

    def watch(self, slots, swap_every: int, models: Path):
        """Sample RSS every 0.25 s, poll /health every second, repoint DIR/current every
        ``swap_every`` frames; returns (samples, polls, swaps requested)."""
        samples, polls, t0, last_poll, swaps = [], {"ok": 0, "failed": 0}, time.time(), 0.0, 0
        self.steady = []  # (frames, RSS KiB) just before each swap: one model in memory
        while self.proc.poll() is None:
            rss = rss_kib(self.proc.pid)
            if rss is not None:
                samples.append((self.done, rss, round(time.time() - t0, 2)))
            if time.time() - last_poll > 1.0:
                last_poll = time.time()
                ok = _poll(self.err)
                if ok is not None:  # None: the endpoint has not announced itself yet
                    polls["ok" if ok else "failed"] += 1
            if slots and self.done >= (swaps + 1) * swap_every:
                if rss is not None:
                    self.steady.append((self.done, rss))
                swaps += 1
                tmp = models / ".current.new"
                tmp.symlink_to(slots[swaps % 2])
                os.replace(tmp, models / "current")
            time.sleep(0.25)
        self.proc.wait()
        time.sleep(0.2)
        return samples, polls, swaps


def _poll(err_lines: list[str]) -> bool | None:
    url = next(
        (m.group(1) for ln in err_lines if (m := re.search(r"serving (http://[^/\s]+)/", ln))),
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


def analyse_steady(steady: list[tuple[int, int]]) -> dict:
    """RSS with one model loaded, sampled just before each swap request: a leak per swap
    makes it climb (during a swap two models are in memory: the transient peak is in
    ``rss_max_kib`` of the whole run). Baseline: before the second swap (the first one
    sets the allocator's high-water mark for two models)."""
    if len(steady) < 3:
        return {"pass": False, "reason": "fewer than 3 swaps"}
    rss = np.array([r for _, r in steady[1:]], dtype=np.float64)
    frames = np.array([f for f, _ in steady[1:]], dtype=np.float64)
    slope = float(np.polyfit(frames, rss, 1)[0]) * 1000 if np.ptp(frames) > 0 else 0.0
    return {
        "samples": steady,
        "rss_first_kib": int(rss[0]),
        "rss_max_kib": int(rss.max()),
        "growth_max": round(float(rss.max() / rss[0] - 1), 4),
        "slope_kib_per_1000_frames": round(slope, 2),
        "limit": 0.05,
        "pass": bool(rss.max() / rss[0] - 1 <= 0.05),
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
    ap.add_argument(
        "--swap-every",
        type=int,
        default=0,
        help="hot-swap the model every N frames (--bundle-dir, two copies of the bundle)",
    )
    a = ap.parse_args(argv)
    size = tuple(int(v) for v in a.size.lower().split("x"))
    report = soak(a.bundle, a.frames, size, a.warmup, a.backend, a.note, a.swap_every)
    from edgeft.atomic import write_json_atomic

    a.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(a.out, report)
    s = report.get("camera_summary") or {}
    print(
        f"{s.get('frames')} frames ({s.get('fps')} fps, {s.get('loops')} loops of the file); RSS after warm-up "
        f"{report.get('rss_warmup_kib')} KiB, max {report.get('rss_max_kib')} KiB "
        f"(+{100 * report.get('growth_max', 0):.2f}%), last {report.get('rss_last_kib')} KiB, slope "
        f"{report.get('slope_kib_per_1000_frames')} KiB/1000 frames: {'PASS' if report.get('pass_whole_run', report['pass']) else 'FAIL'} "
        f"(limit +5%); health polls {report['http_polls']}; frame ids continuous "
        f"{report['frame_ids_continuous']}; swaps requested {report['swaps_requested']}, done "
        f"{(s.get('swaps') or {}).get('swapped')}, confirmed {(s.get('swaps') or {}).get('confirmed')}"
    )
    if report["between_swaps"]:
        b = report["between_swaps"]
        print(
            f"between swaps (one model loaded): RSS {b.get('rss_first_kib')} -> max {b.get('rss_max_kib')} "
            f"KiB (+{100 * b.get('growth_max', 0):.2f}%), slope {b.get('slope_kib_per_1000_frames')} "
            f"KiB/1000 frames: {'PASS' if b['pass'] else 'FAIL'} (limit +5%)"
        )
    print(f"wrote {a.out}")
    return report


if __name__ == "__main__":
    main()
