"""Source parsing, GStreamer pipeline strings (checked as strings: no Jetson or GStreamer
here), and the errors a wrong --source gives."""

from __future__ import annotations

import json

import pytest

from deploy.sources import (
    APPSINK,
    SourceError,
    csi_pipeline,
    gstreamer_available,
    open_capture,
    parse_source,
    rtsp_pipeline,
)
from edgeft.errors import UserError
from tests.conftest import run_cli


def test_csi_pipeline_string():
    assert csi_pipeline(0) == (
        "nvarguscamerasrc sensor-id=0 ! "
        "video/x-raw(memory:NVMM),width=1280,height=720,framerate=30/1,format=NV12 ! "
        "nvvidconv flip-method=0 ! video/x-raw,width=1280,height=720,format=BGRx ! "
        "videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false"
    )
    p = csi_pipeline(1, 1920, 1080, 60, flip=2, out_width=960, out_height=540)
    assert p.startswith("nvarguscamerasrc sensor-id=1 ! ")
    assert "width=1920,height=1080,framerate=60/1,format=NV12" in p
    assert "nvvidconv flip-method=2 ! video/x-raw,width=960,height=540,format=BGRx" in p


def test_rtsp_pipeline_strings():
    url = "rtsp://user:pw@10.0.0.5:554/stream1"
    assert rtsp_pipeline(url, jetson=True) == (
        'rtspsrc location="rtsp://user:pw@10.0.0.5:554/stream1" latency=0 protocols=tcp ! rtph264depay ! '
        "h264parse ! nvv4l2decoder ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! "
        "video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false"
    )
    soft = rtsp_pipeline(url, latency_ms=200, codec="h265", jetson=False, tcp=False)
    assert soft == (
        'rtspsrc location="rtsp://user:pw@10.0.0.5:554/stream1" latency=200 ! rtph265depay ! h265parse ! '
        "avdec_h265 ! videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false"
    )
    with pytest.raises(UserError, match="codec"):
        rtsp_pipeline(url, codec="mjpeg")
    with pytest.raises(SourceError, match="codec"):
        parse_source("rtsp://cam/s?codec=mjpeg")


def test_parse_forms(tmp_path):
    clip = tmp_path / "clip.avi"
    clip.write_bytes(b"x")
    s = parse_source(str(clip))
    assert (s.kind, s.target, s.live) == ("file", str(clip), False)
    assert parse_source(f"file://{clip}").target == str(clip)

    s = parse_source("csi://1?width=1920&height=1080&fps=30&flip=2")
    assert (s.kind, s.live, s.options["sensor_id"]) == ("csi", True, 1)
    assert s.pipeline == csi_pipeline(1, 1920, 1080, 30, 2)

    s = parse_source("rtsp://cam.local:8554/live?codec=h265&latency=100&token=abc")
    assert (s.kind, s.live, s.options) == ("stream", True, {"codec": "h265", "latency": 100})
    assert s.target == "rtsp://cam.local:8554/live?token=abc"  # our keys removed, the camera's kept
    assert (
        'location="rtsp://cam.local:8554/live?token=abc" latency=100' in s.pipeline
        and "h265" in s.pipeline
    )

    s = parse_source("http://127.0.0.1:8080/video.mjpg")
    assert (s.kind, s.pipeline) == ("stream", None)

    s = parse_source("gst:videotestsrc ! videoconvert")
    assert s.kind == "gst" and s.pipeline == f"videotestsrc ! videoconvert ! {APPSINK}"
    assert parse_source("gst:videotestsrc ! appsink").pipeline == "videotestsrc ! appsink"

    assert "pw" not in parse_source("rtsp://admin:pw@10.0.0.5/s").describe()


@pytest.mark.parametrize(
    "spec,needle",
    [
        ("ftp://host/clip.mp4", "unknown source scheme ftp://"),
        ("webrtc://x", "unknown source scheme webrtc://"),
        ("/dev/video57", "camera /dev/video57 does not exist"),
        ("57", "camera /dev/video57 does not exist"),
        ("/no/such/clip.mp4", "does not exist"),
        ("csi://front", "csi://N"),
        ("csi://0?width=wide", "not an integer"),
        ("rtsp:///nohost", "has no host"),
        ("gst:", "needs a pipeline"),
        ("", "is empty"),
    ],
)
def test_bad_sources(spec, needle):
    with pytest.raises(SourceError, match=None) as info:
        parse_source(spec)
    msg = str(info.value)
    assert needle in msg and "\n" not in msg


@pytest.mark.skipif(gstreamer_available(), reason="this OpenCV has GStreamer")
@pytest.mark.parametrize("spec", ["csi://0", "gst:videotestsrc"])
def test_pipeline_sources_need_gstreamer(spec):
    with pytest.raises(SourceError, match="needs OpenCV built with GStreamer"):
        open_capture(parse_source(spec))


def test_unopenable_file(tmp_path):
    bad = tmp_path / "notavideo.mp4"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(SourceError, match="cannot open video file"):
        open_capture(parse_source(str(bad)))


def test_env_reports_gstreamer_truthfully():
    """`edgeft env` says whether OpenCV has GStreamer, and agrees with OpenCV's registry."""
    proc = run_cli("env", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)["opencv"]
    assert info["installed"]
    reported = info["gstreamer"]
    assert reported == "NO" or reported.startswith("YES")
    assert reported.startswith("YES") == gstreamer_available()


@pytest.mark.parametrize(
    "spec,decoder,needle",
    [
        ("rtsp://cam/s", "nvdec", "--decoder 'nvdec': use one of auto, gst, ffmpeg"),
        ("http://cam/video.mjpg", "gst", "--decoder gst applies to rtsp:// sources"),
        ("gst:videotestsrc", "ffmpeg", "--decoder ffmpeg cannot read gst sources"),
    ],
)
def test_decoder_choice_errors(spec, decoder, needle):
    """--decoder: a name it knows, gst only where edgeft builds a pipeline, ffmpeg never for
    a pipeline source (checked before anything opens)."""
    from deploy.sources import gstreamer_available

    if decoder == "ffmpeg" and not gstreamer_available():
        needle = "needs OpenCV built with GStreamer"  # that comes first here
    with pytest.raises(UserError) as info:
        open_capture(parse_source(spec, decoder))
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_decoder_ffmpeg_skips_the_pipeline(tmp_path):
    """--decoder ffmpeg reads rtsp:// with FFmpeg even where GStreamer exists; auto records
    what opened the source."""
    from deploy.sources import _use_gstreamer

    src = parse_source("rtsp://cam/s", "ffmpeg")
    assert src.pipeline and not _use_gstreamer(src, True)
    assert _use_gstreamer(parse_source("rtsp://cam/s"), True)
    assert not _use_gstreamer(parse_source("rtsp://cam/s"), False)
    assert _use_gstreamer(parse_source("rtsp://cam/s", "gst"), True)
