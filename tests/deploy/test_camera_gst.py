"""GStreamer for real: `edgeft camera` in a Python environment set up like a Jetson's
(Debian's python3-opencv 4.6 built with GStreamer, its numpy, pip's ONNX Runtime and the
runtime requirements; no pip OpenCV) runs `gst:` pipelines: `videotestsrc`, and `rtspsrc`
against a real RTSP server. (`rtsp://` with `--decoder gst` runs in test_camera_rtsp.py;
`csi://` needs a Jetson's nvarguscamerasrc and stays tested as a string.)"""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from tests.camera_support import RtspServer, free_port, rtsp_server_reason, write_frames

BGR = "videoconvert ! video/x-raw,format=BGR"


def _camera(jetson_python, *args, timeout=120):
    py, env = jetson_python
    return subprocess.run(
        [str(py), "-m", "edgeft", "camera", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def test_gst_videotestsrc(jetson_python, cam_bundle, tmp_path):
    pipe = f"gst:videotestsrc is-live=true ! video/x-raw,width=64,height=48,framerate=30/1 ! {BGR}"
    proc = _camera(
        jetson_python,
        cam_bundle,
        "--source",
        pipe,
        "--max-frames",
        "10",
        "--summary",
        tmp_path / "s.json",
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    records = [json.loads(ln) for ln in proc.stdout.splitlines()]
    assert [r["frame"] for r in records] == list(range(10)) and all(r["top"] for r in records)
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["decoder"] == "gstreamer" and summary["frames"] == 10
    assert (
        summary["pipeline"].startswith("videotestsrc is-live=true")
        and "appsink drop=true" in summary["pipeline"]
    )


@pytest.mark.skipif(bool(rtsp_server_reason()), reason=str(rtsp_server_reason()))
def test_gst_rtspsrc_pipeline(jetson_python, cam_bundle, tmp_path):
    """A hand-written gst: pipeline with rtspsrc and libav's H.264 decoder, against a real
    RTSP server: frames of the served images arrive and are classified."""
    rng = np.random.default_rng(0)
    frames = [
        np.clip(rng.normal(c, 30, (40, 40, 3)), 0, 255).astype(np.uint8)
        for c in ((200, 30, 30), (30, 200, 30), (30, 30, 200))
    ]
    server = RtspServer(free_port(), write_frames(tmp_path / "frames", frames)).start()
    try:
        pipe = (
            f"gst:rtspsrc location={server.url} latency=0 protocols=tcp ! rtph264depay ! "
            f"h264parse ! avdec_h264 ! {BGR}"
        )
        proc = _camera(
            jetson_python,
            cam_bundle,
            "--source",
            pipe,
            "--max-frames",
            "15",
            "--summary",
            tmp_path / "s.json",
        )
    finally:
        server.kill()
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(ln) for ln in proc.stdout.splitlines()]
    assert len(records) == 15 and all(len(r["top"]) == 3 for r in records)
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["decoder"] == "gstreamer" and "rtspsrc" in summary["pipeline"]


def test_decoder_gst_needs_gstreamer_in_opencv(cam_bundle):
    """pip's OpenCV has no GStreamer: `--decoder gst` is one line, not a silent FFmpeg."""
    from deploy.sources import gstreamer_available
    from tests.conftest import assert_one_line_error, run_cli

    if gstreamer_available():
        pytest.skip("this OpenCV has GStreamer")
    proc = run_cli("camera", cam_bundle, "--source", "rtsp://127.0.0.1:9/x", "--decoder", "gst")
    assert_one_line_error(proc, 2, "--decoder gst needs OpenCV built with GStreamer")
