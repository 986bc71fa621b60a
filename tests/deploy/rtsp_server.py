"""A real RTSP server for the camera tests: GStreamer's RTSP server (GstRtspServer, Debian's
``gir1.2-gst-rtsp-server-1.0`` + ``python3-gi``), run by the system ``/usr/bin/python3``.

    /usr/bin/python3 tests/deploy/rtsp_server.py PORT FRAMES_PATTERN [--fps 15] [--mount /clip]

Serves ``rtsp://127.0.0.1:PORT/clip``: the PNG frames ``FRAMES_PATTERN`` (a printf pattern
such as ``/tmp/x/%05d.png``) looped forever, as H.264 in lossless mode (``qp 0``) with
10-bit 4:4:4 chroma (``Y444_10LE``), so that the decoded frames differ from the PNGs only
by the RGB <-> YUV rounding: at most 2 levels, measured through FFmpeg and GStreamer (8-bit
4:4:4 gave 3, and flipped a EuroSAT model's answer on one image). Over RTSP/TCP
(interleaved) or UDP as the client asks. All clients share one encoder (``shared``); a new one starts at a key frame (one a
second). Prints ``ready PORT`` once listening; stops on SIGTERM/SIGKILL like a real camera
losing power.
"""

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

LAUNCH = (
    "( multifilesrc location={pattern} loop=true caps=image/png,framerate={fps}/1 ! pngdec ! "
    "videoconvert ! video/x-raw,format=Y444_10LE ! x264enc pass=quant quantizer=0 "
    "speed-preset=ultrafast tune=zerolatency key-int-max={fps} ! "
    "rtph264pay name=pay0 pt=96 config-interval=1 )"
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("pattern")
    ap.add_argument("--fps", type=int, default=15)
    ap.add_argument("--mount", default="/clip")
    a = ap.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(a.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(LAUNCH.format(pattern=a.pattern, fps=a.fps))
    factory.set_shared(True)
    server.get_mount_points().add_factory(a.mount, factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{a.port}")
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    print(f"ready {a.port}", flush=True)
    loop.run()


if __name__ == "__main__":
    main()
