"""Issue 14, point 5: `edgeft camera --serve` under load while it classifies a looping video
(the study benchmarks/studies/camera_http_load.py, run here at the issue's sizes): 500
requests from 50 concurrent clients, then 300 idle connections (half of them stalled
mid-request) while requests go on, then 100 clients resetting mid-response."""

from __future__ import annotations

import numpy as np

from benchmarks.studies.camera_http_load import run_load, verdict
from tests.camera_support import write_lossless_video


def test_serve_holds_under_load(cam_bundle, tmp_path):
    rng = np.random.default_rng(0)
    frames = [
        np.clip(rng.normal(120, 40, (120, 160, 3)), 0, 255).astype(np.uint8) for _ in range(30)
    ]
    video = write_lossless_video(tmp_path / "loop.avi", frames, fps=30)
    report = run_load(cam_bundle, video, requests=500, clients=50, idle=300, resets=100)
    assert not verdict(report), (verdict(report), report)
    ph = report["phases"]
    assert ph["burst"]["failed"] == 0 and ph["burst"]["max_ms"] < 1000
    assert ph["idle"]["failed"] == 0 and ph["idle"]["closed_by_server"] == 300  # idle timeout
    assert report["http"]["disconnects"] >= 1 and report["disconnect_lines"] == 1
    assert max(report["threads"]) - min(report["threads"]) <= 2  # not one per connection
    assert not report["traceback"] and report["exit_code"] == 0


def test_serving_beyond_loopback_warns(cam_bundle, tmp_path):
    """--serve 0.0.0.0:PORT binds every interface: allowed, with one warning line."""
    from tests.conftest import run_cli

    frames = [np.full((40, 40, 3), 120, np.uint8)] * 3
    video = write_lossless_video(tmp_path / "v.avi", frames)
    proc = run_cli("camera", cam_bundle, "--source", video, "--serve", "0.0.0.0:0")
    assert proc.returncode == 0, proc.stderr
    warnings = [ln for ln in proc.stderr.splitlines() if "warning: --serve 0.0.0.0:" in ln]
    assert len(warnings) == 1 and "no authentication" in warnings[0]
    local = run_cli("camera", cam_bundle, "--source", video, "--serve", "127.0.0.1:0")
    assert local.returncode == 0 and "warning" not in local.stderr
