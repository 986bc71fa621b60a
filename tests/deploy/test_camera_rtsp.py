"""RTSP for real: GStreamer's RTSP server on 127.0.0.1 streams labelled EuroSAT validation
images; `edgeft camera` classifies the stream, the server is killed mid-stream and started
again, and the app reconnects with backoff and goes on.

Decoded two ways: by pip's OpenCV through FFmpeg (`--decoder ffmpeg`, this venv), and by
Debian's OpenCV through the GStreamer pipeline edgeft builds (`--decoder gst`, in a venv set
up like a Jetson's: system OpenCV, pip ONNX Runtime). Frames before and after the outage
must have the top-1 (and nearly the probabilities) `edgeft predict` gives on the images.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from deploy.sources import rtsp_pipeline
from edgeft.preprocess import load_rgb
from tests.camera_support import (
    Lines,
    RtspServer,
    free_port,
    rtsp_server_reason,
    wait_for,
    write_frames,
)
from tests.conftest import run_cli

pytestmark = pytest.mark.skipif(bool(rtsp_server_reason()), reason=str(rtsp_server_reason()))

CLIP_IMAGES = 12
SIZE = 64  # EuroSAT images: 64 x 64
MARK_ROWS = 16  # below each image, the image's index in 8 black/white blocks


@pytest.fixture(scope="module")
def clip(eurosat_onnx, tmp_path_factory):
    """Validation images the model answers with a clear margin, steady under a few levels of
    noise (so the codec's rounding cannot flip them), of several classes; `edgeft predict`'s
    answers on them; their frames (image above, its index as a marker below) as PNGs."""
    from edgeft.bundle import Bundle

    paths = [str(p) for p, _ in Bundle.load(eurosat_onnx).split()["valid"]]
    pred = run_cli("predict", eurosat_onnx, *paths, "--backend", "onnx", "--json", "--top-k", "10")
    assert pred.returncode == 0, pred.stderr
    answers = [
        {t["label"]: t["prob"] for t in json.loads(ln)["top"]} for ln in pred.stdout.splitlines()
    ]
    picked = _steady(eurosat_onnx, paths, answers)
    assert len({_top(a) for _, a in picked}) >= 4, "too few steady, confident classes"
    frames = [_with_marker(np.asarray(load_rgb(p)), i) for i, (p, _) in enumerate(picked)]
    pattern = write_frames(tmp_path_factory.mktemp("rtsp") / "frames", frames)
    return pattern, [a for _, a in picked]


def _top(answer: dict) -> str:
    return max(answer, key=answer.get)


def _steady(bundle, paths, answers) -> list[tuple[str, dict]]:
    """Up to CLIP_IMAGES images, at most two per answered class, whose top-1 leads by 0.3
    and survives three draws of +-2-level noise."""
    from edgeft.runtime import Classifier

    rng, picked, per_label = np.random.default_rng(0), [], {}
    with Classifier.load(bundle, backend="onnx") as clf:
        for path, ans in zip(paths, answers, strict=True):
            (l1, p1), (_, p2) = sorted(ans.items(), key=lambda kv: -kv[1])[:2]
            if p1 - p2 < 0.3 or per_label.get(l1, 0) >= 2:
                continue
            img = np.asarray(load_rgb(path)).astype(np.int16)
            noisy = [
                np.clip(img + rng.integers(-2, 3, img.shape), 0, 255).astype(np.uint8)
                for _ in range(3)
            ]
            if all(r.label == l1 for r in clf.classify(noisy)):
                per_label[l1] = per_label.get(l1, 0) + 1
                picked.append((path, ans))
    return picked[:CLIP_IMAGES]


def _with_marker(img: np.ndarray, index: int) -> np.ndarray:
    """The image with ``index`` below it: 4 bits then their complement, 8 px blocks."""
    assert img.shape == (SIZE, SIZE, 3)
    bits = [(index >> b) & 1 for b in range(4)]
    strip = np.zeros((MARK_ROWS, SIZE, 3), np.uint8)
    for j, bit in enumerate(bits + [1 - b for b in bits]):
        strip[:, 8 * j : 8 * j + 8] = 255 * bit
    return np.concatenate([img, strip])


def _read_markers(video) -> list[int]:
    """The index in each frame of the camera's annotated video (None where unreadable)."""
    import cv2

    cap, out = cv2.VideoCapture(str(video)), []
    while True:
        ok, frame = cap.read()
        if not ok:
            return out
        strip = frame[SIZE + 4 : SIZE + MARK_ROWS - 2].astype(np.float32).mean(axis=(0, 2))
        bits = [int(strip[8 * j + 2 : 8 * j + 6].mean() > 128) for j in range(8)]
        ok = bits[4:] == [1 - b for b in bits[:4]]
        out.append(sum(b << i for i, b in enumerate(bits[:4])) if ok else None)


def _camera(decoder: str, jetson_python, bundle, url: str, summary) -> Lines:
    args = [
        "camera",
        str(bundle),
        "--source",
        url,
        "--decoder",
        decoder,
        "--top-k",
        "10",
        "--roi",
        f"0,0,{SIZE},{SIZE}",
        "--video",
        str(summary.with_name("seen.avi")),
        "--summary",
        str(summary),
    ]
    py, env = (sys.executable, None) if jetson_python is None else jetson_python
    return Lines(
        subprocess.Popen(
            [str(py), "-m", "edgeft", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
    )


@pytest.fixture(params=["ffmpeg", "gst"])
def decoder(request):
    if request.param == "gst":
        return request.param, request.getfixturevalue("jetson_python")
    return request.param, None


def test_rtsp_outage_reconnects_and_matches_predict(eurosat_onnx, clip, decoder, tmp_path):
    """Issue 16, point 1: a real RTSP server killed mid-stream and restarted."""
    name, jetson = decoder
    pattern, answers = clip
    port = free_port()
    server = RtspServer(port, pattern).start()
    lines = _camera(name, jetson, eurosat_onnx, server.url, tmp_path / "s.json")
    try:
        assert wait_for(lambda: len(lines.out) >= 20, timeout=60), lines.err
        t_kill = time.time()
        server.kill()
        assert wait_for(lambda: lines.has_err("reconnect attempt 2 failed"), timeout=30), lines.err
        server.start()
        t_back = time.time()
        assert wait_for(lambda: lines.has_err("frames again after"), timeout=60), lines.err
        n = len(lines.out)
        assert wait_for(lambda: len(lines.out) >= n + 20, timeout=30), lines.err
        assert lines.finish() == 0, lines.err
    finally:
        server.kill()
        if lines.proc.poll() is None:
            lines.proc.kill()
    assert not lines.has_err("Traceback"), lines.err
    records = lines.records()
    summary = json.loads((tmp_path / "s.json").read_text())
    shown = _read_markers(tmp_path / "seen.avi")  # which image each classified frame showed
    assert len(shown) == len(records) and None not in shown, (len(shown), len(records))
    _check_records(records, [answers[i] for i in shown], t_kill, t_back)
    _check_summary(summary, records, name, server.url, t_back - t_kill)


def _check_records(records, answers, t_kill, t_back) -> None:
    """``answers[i]``: `edgeft predict` on the image frame ``records[i]`` showed."""
    ids, ts = [r["frame"] for r in records], [r["ts"] for r in records]
    assert ids == sorted(set(ids)) and ts == sorted(ts)  # sequence numbers, capture times
    assert max(np.diff(ts)) >= (t_back - t_kill) - 0.5  # the outage: a gap in capture times
    # (frames in transit when the server died may still be read just after t_kill)
    before = [i for i, r in enumerate(records) if r["ts"] < t_back]
    after = [i for i, r in enumerate(records) if r["ts"] > t_back]
    assert len(before) >= 20 and len(after) >= 20 and len(before) + len(after) == len(records)
    for part in (before, after):
        for i in part:
            assert records[i]["top"][0]["label"] == _top(answers[i]), (
                records[i]["frame"],
                answers[i],
            )
            got = {t["label"]: t["prob"] for t in records[i]["top"]}
            assert max(abs(got[k] - v) for k, v in answers[i].items()) < 0.2
        assert len({_top(answers[i]) for i in part}) >= 3  # several classes, not one repeated


def _check_summary(summary, records, decoder, url, down_s) -> None:
    assert summary["frames"] == len(records) and summary["end"] == "signal SIGTERM"
    # every frame received was classified or dropped for a newer one (one may be in flight)
    assert 0 <= summary["read"] - summary["frames"] - summary["dropped"] <= 1
    o = summary["outages"]
    assert o["count"] == 1 and o["reconnect_attempts"] >= 3 and summary["reconnects"] >= 1
    assert o["recent"][0]["recovered"] and o["longest_s"] >= down_s
    if decoder == "gst":
        assert summary["decoder"] == "gstreamer"
        assert summary["pipeline"] == rtsp_pipeline(url)  # the pipeline edgeft builds ran
    else:
        assert summary["decoder"] == "ffmpeg" and "pipeline" not in summary
