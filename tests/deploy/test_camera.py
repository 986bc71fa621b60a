"""`edgeft camera` end to end: a video of validation images against `edgeft predict`,
signals, stream loss and reconnects, the HTTP endpoint, and bad input."""

from __future__ import annotations

import json
import signal
import socket
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from deploy.capture import FrameGrabber
from deploy.sources import Source, SourceError, open_capture, parse_source
from edgeft.preprocess import load_rgb
from tests.camera_support import (
    Lines,
    MjpegServer,
    camera_proc,
    export_onnx,
    free_port,
    wait_for,
    write_lossless_video,
)
from tests.conftest import assert_one_line_error, run_cli

STAGES = {"capture", "preprocess", "wait", "inference", "post"}


@pytest.fixture(scope="module")
def bundle(cam_bundle):
    return cam_bundle  # tiny, with ONNX and ONNX INT8 (tests/deploy/conftest.py); read-only


@pytest.fixture(scope="module")
def clip(bundle, tmp_path_factory):
    """A lossless video of the bundle's validation images, and the images' paths."""
    from edgeft.bundle import Bundle

    paths = [p for p, _ in Bundle.load(bundle).split()["valid"]]
    video = tmp_path_factory.mktemp("clip") / "valid.avi"
    write_lossless_video(video, [np.asarray(load_rgb(p)) for p in paths])
    return video, paths


def test_video_frames_match_predict_on_source_images(bundle, clip, tmp_path):
    """Issue point 1: each frame's top-1 equals `edgeft predict` on the image it came from."""
    video, paths = clip
    proc = run_cli(
        "camera", bundle, "--source", video, "--top-k", "3", "--summary", tmp_path / "s.json"
    )
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(ln) for ln in proc.stdout.splitlines()]
    assert [r["frame"] for r in records] == list(
        range(len(paths))
    )  # every frame, in order, none dropped
    for r in records:
        assert set(r["latency_ms"]) == STAGES and all(v >= 0 for v in r["latency_ms"].values())
        assert r["age_ms"] > 0 and isinstance(r["ts"], float) and len(r["top"]) == 3
    pred = run_cli("predict", bundle, *paths, "--backend", "onnx-int8", "--json", "--top-k", "3")
    assert pred.returncode == 0, pred.stderr
    expected = [json.loads(ln) for ln in pred.stdout.splitlines()]
    assert [e["path"] for e in expected] == [str(p) for p in paths]
    for r, e in zip(records, expected, strict=True):
        assert r["top"][0]["label"] == e["top"][0]["label"], (r["frame"], e["path"])
        for a, b in zip(r["top"], e["top"], strict=True):
            assert abs(a["prob"] - b["prob"]) < 2e-6
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["frames"] == summary["read"] == len(paths) and summary["dropped"] == 0
    assert summary["end"] == "end of file" and summary["backend"]["backend"] == "onnx-int8"
    assert STAGES | {"frame_time", "age"} <= set(summary["latency_ms"])
    assert 0 <= summary["overhead"]["share"] < 1 and 0 < summary["overhead"]["serial_share"] < 1
    assert "overhead over inference" in proc.stderr


def test_roi_smoothing_video_and_file_output(bundle, tmp_path):
    import cv2

    from edgeft.runtime import Classifier

    # left half red, right half blue: the ROI decides what is seen
    frames = []
    for i in range(12):
        img = np.zeros((48, 96, 3), np.uint8)
        img[:, :48] = (200, 30 + i, 30)
        img[:, 48:] = (30, 30, 200 - i)
        frames.append(img)
    video = write_lossless_video(tmp_path / "halves.avi", frames)
    out, ann = tmp_path / "r.jsonl", tmp_path / "annotated.mp4"
    proc = run_cli(
        "camera",
        bundle,
        "--source",
        video,
        "--roi",
        "48,0,48,48",
        "--smooth",
        "3",
        "--out",
        out,
        "--video",
        ann,
        "--top-k",
        "2",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    recs = [json.loads(ln) for ln in out.read_text().splitlines()]
    assert [r["smoothed"] for r in recs] == [1, 2, 3] + [3] * 9
    with Classifier.load(bundle) as clf:
        raw = [
            clf.classify(np.ascontiguousarray(f[:, 48:, ::-1]), channel_order="BGR").scores
            for f in frames
        ]
    for i, r in enumerate(recs):
        expect = np.mean(raw[max(0, i - 2) : i + 1], axis=0)
        best = int(np.argmax(expect))
        assert r["top"][0]["label"] == clf.labels[best]
        assert abs(r["top"][0]["prob"] - expect[best]) < 2e-6
    cap = cv2.VideoCapture(str(ann))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12 and cap.read()[1].shape == (48, 96, 3)
    assert not list(tmp_path.glob(".*partial*"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_exits_zero_with_summary(bundle, clip, tmp_path, sig):
    video, _ = clip
    lines = Lines(
        camera_proc(bundle, "--source", video, "--loop", "--summary", tmp_path / "s.json")
    )
    assert wait_for(lambda: len(lines.out) >= 30), lines.err
    assert lines.finish(sig) == 0, lines.err
    assert lines.has_err(f"ended: signal {sig.name}") and not lines.has_err("Traceback")
    summary = json.loads((tmp_path / "s.json").read_text())
    assert (
        summary["frames"] >= 30 and summary["loops"] >= 1 and summary["end"] == f"signal {sig.name}"
    )
    assert [json.loads(ln)["frame"] for ln in lines.out[:30]] == list(range(30))


def test_stream_loss_reconnects_with_backoff(bundle, tmp_path):
    """Issue point 4: a local MJPEG camera is stopped mid-stream, then comes back."""
    port = free_port()
    server = MjpegServer(port).start()
    lines = Lines(camera_proc(bundle, "--source", server.url, "--summary", tmp_path / "s.json"))
    try:
        assert wait_for(lambda: len(lines.out) >= 10), lines.err
        server.stop()
        assert wait_for(lambda: lines.has_err("reconnect attempt 2 failed")), lines.err
        assert (
            lines.has_err("lost after")
            and lines.has_err("next in 1.0 s")
            and lines.has_err("next in 2.0 s")
        )
        n_before = len(lines.out)
        server = MjpegServer(port).start()
        assert wait_for(lambda: lines.has_err("reconnected to stream"), timeout=20), lines.err
        assert wait_for(lambda: len(lines.out) >= n_before + 10), lines.err
        assert lines.finish() == 0, lines.err
    finally:
        server.stop()
        if lines.proc.poll() is None:
            lines.proc.kill()
    assert not lines.has_err("Traceback")
    summary = json.loads((tmp_path / "s.json").read_text())
    assert (
        summary["losses"] >= 1 and summary["reconnects"] >= 1 and summary["end"] == "signal SIGTERM"
    )
    ids = [json.loads(ln)["frame"] for ln in lines.out]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_stream_loss_gives_up_after_retries(bundle, tmp_path):
    server = MjpegServer(free_port()).start()
    lines = Lines(camera_proc(bundle, "--source", server.url, "--retries", "2"))
    try:
        assert wait_for(lambda: len(lines.out) >= 5), lines.err
        server.stop()
        rc = lines.finish(sig=None, timeout=30)
    finally:
        server.stop()
    assert rc == 2, lines.err
    assert not lines.has_err("Traceback")
    assert (
        lines.err[-1].startswith("edgeft: error: stream")
        and "gave up after 2 reconnect attempts" in lines.err[-1]
    )
    assert lines.has_err("ended: error") or lines.has_err("ended: stream lost")


def test_truncated_file_ends_cleanly(bundle, clip, tmp_path):
    video, paths = clip
    cut = tmp_path / "cut.avi"
    data = video.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    proc = run_cli("camera", bundle, "--source", cut)
    assert proc.returncode == 0, proc.stderr
    n = len(proc.stdout.splitlines())
    assert 0 < n < len(paths)
    assert "truncated?" in proc.stderr and "Traceback" not in proc.stderr


def test_serve_latest_and_health(bundle, clip):
    video, _ = clip
    port = free_port()
    lines = Lines(camera_proc(bundle, "--source", video, "--loop", "--serve", f"127.0.0.1:{port}"))
    try:
        assert wait_for(lambda: len(lines.out) >= 5), lines.err
        assert lines.has_err(f"serving http://127.0.0.1:{port}/ (live view)")
        base = f"http://127.0.0.1:{port}"
        health = json.loads(urllib.request.urlopen(f"{base}/health", timeout=5).read())
        assert (
            health["status"] == "ok"
            and health["backend"] == "onnx-int8"
            and health["last_frame"] >= 0
        )
        latest = json.loads(urllib.request.urlopen(f"{base}/latest", timeout=5).read())
        assert set(latest["latency_ms"]) == STAGES and latest["top"]
        summ = json.loads(urllib.request.urlopen(f"{base}/summary", timeout=5).read())
        assert summ["frames"] >= 5
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"{base}/nope", timeout=5)
        assert info.value.code == 404
    finally:
        assert lines.finish() == 0, lines.err


def test_port_in_use_is_one_line(bundle, clip):
    video, _ = clip
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = run_cli("camera", bundle, "--source", video, "--serve", f"127.0.0.1:{port}")
    assert_one_line_error(proc, 2, "already in use")


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--source", "ftp://x/y.mp4"], "unknown source scheme ftp://"),
        (["--source", "/dev/video57"], "camera /dev/video57 does not exist"),
        (["--source", "CLIP", "--roi", "1,2,3"], "--roi"),
        (["--source", "CLIP", "--roi", "0,0,400,400"], "does not fit in the 40x40 frame"),
        (["--source", "CLIP", "--top-k", "0"], "--top-k"),
        (["--source", "CLIP", "--serve", "127.0.0.1:http"], "--serve"),
        (["--source", "CLIP", "--video", "out.gif"], "--video"),
        (["--source", "CLIP", "--backend", "trt-fp16"], "backend trt-fp16 cannot run"),
    ],
)
def test_bad_input_is_one_line(bundle, clip, args, needle):
    video, _ = clip
    proc = run_cli("camera", bundle, *[str(video) if a == "CLIP" else a for a in args])
    assert_one_line_error(proc, 2, needle)


def test_grabber_keeps_newest_frame_and_counts_drops(tmp_path):
    """A realtime-paced source faster than its consumer: stale frames are dropped, counted,
    and every frame read is either consumed or dropped."""
    frames = [np.full((16, 16, 3), i, np.uint8) for i in range(60)]
    video = write_lossless_video(tmp_path / "fast.avi", frames, fps=200)
    src = parse_source(str(video))
    g = FrameGrabber(src, open_capture(src), realtime=True).start()
    got = []
    while True:
        f = g.get(timeout=1.0)
        if f is None:
            break
        got.append(f)
        time.sleep(0.03)  # a slow model
    g.stop()
    ids = [f.id for f in got]
    assert g.stats.read == 60 and g.stats.dropped > 20
    assert len(ids) + g.stats.dropped == 60 and ids == sorted(ids)
    assert all(int(f.image[0, 0, 0]) == f.id for f in got)  # the id is the frame's position


class _DyingCap:
    """Three frames, then the stream is gone."""

    def __init__(self):
        self.left = 3

    def read(self):
        self.left -= 1
        return (True, np.zeros((8, 8, 3), np.uint8)) if self.left >= 0 else (False, None)

    def release(self):
        pass

    def get(self, _prop):
        return 0.0


def test_reconnect_backoff_doubles_and_gives_up():
    messages, attempts = [], []

    def opener(_src):
        attempts.append(time.monotonic())
        raise SourceError("connection refused")

    src = Source("rtsp://cam/s", "stream", "rtsp://cam/s", True)
    g = FrameGrabber(
        src, _DyingCap(), retries=4, backoff=(0.05, 0.2), opener=opener, log=messages.append
    ).start()
    assert g.finished.wait(5)
    gaps = np.diff(attempts)
    assert (
        len(attempts) == 4 and gaps[0] > 0.09 and gaps[1] > 0.19 and gaps[2] > 0.19
    )  # 0.1, 0.2, 0.2 (cap)
    assert [m.split(";")[-1].strip() for m in messages[1:]] == [
        "next in 0.1 s",
        "next in 0.2 s",
        "next in 0.2 s",
    ]
    assert messages[0] == "stream rtsp://cam/s lost after 3 frames; reconnecting"
    assert g.error.startswith("stream rtsp://cam/s lost; gave up after 4 reconnect attempts")
    assert g.stats.read == 3 and g.stats.losses == 1


@pytest.mark.slow
def test_eurosat_video_matches_predict(eurosat_bundle_copy, tmp_path):
    """Issue point 1 on real data: 400 EuroSAT validation images (near-ties included) as a
    lossless video through `edgeft camera`, against `edgeft predict` on the files."""
    from edgeft.bundle import Bundle

    export_onnx(eurosat_bundle_copy, int8=True)  # parity gating is export's own test
    paths = [p for p, _ in Bundle.load(eurosat_bundle_copy).split()["valid"]]
    video = write_lossless_video(tmp_path / "eurosat.avi", [np.asarray(load_rgb(p)) for p in paths])
    proc = run_cli("camera", eurosat_bundle_copy, "--source", video, "--top-k", "1")
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(ln) for ln in proc.stdout.splitlines()]
    pred = run_cli(
        "predict", eurosat_bundle_copy, *paths, "--backend", "onnx-int8", "--json", "--top-k", "1"
    )
    expected = [json.loads(ln) for ln in pred.stdout.splitlines()]
    assert len(records) == len(expected) == len(paths) == 400
    assert [r["top"][0]["label"] for r in records] == [e["top"][0]["label"] for e in expected]
    assert (
        max(
            abs(r["top"][0]["prob"] - e["top"][0]["prob"])
            for r, e in zip(records, expected, strict=True)
        )
        < 2e-6
    )
