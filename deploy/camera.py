"""``edgeft camera``: classify a live source frame by frame, measuring where time goes.

Threads: the capture thread (:mod:`deploy.capture`) reads, crops and preprocesses
frames; the loop (:mod:`deploy.loop`) runs inference on the newest one and does the
post-processing (smoothing, top-k, output); with ``--serve``, one HTTP thread
(:mod:`deploy.web`); with ``--bundle-dir`` or SIGHUP, a watcher that verifies new bundles
beside the running model (:mod:`deploy.swap`). Each frame's record is one JSON line::

    {"ts": 1732420000.123, "frame": 41, "model": "3f2a9c0b1d4e",
     "top": [{"label": "Forest", "prob": 0.93}, ...],
     "latency_ms": {"capture": 2.1, "preprocess": 0.9, "wait": 0.1, "inference": 3.4,
                    "post": 0.05}, "age_ms": 6.8, "dropped": 0}

``ts`` is when the frame was read (capture timestamp, wall clock), ``frame`` its sequence
number (continuous over the run: across loops, reconnects and model swaps), ``model`` the
first 12 hex digits of the sha256 of the artifact that classified it, ``capture`` the read
and decode, ``preprocess`` the ROI crop and bundle preprocessing (both in the capture
thread, overlapping the previous inference), ``wait`` how long the loop waited for the
frame, ``post`` smoothing and top-k, ``age_ms`` the time from read to result: the latency
a user sees; ``dropped`` how many frames so far were replaced by a newer one before the
loop took them. A model update adds ``"swap": {"result": "swapped" | "confirmed" |
"rolled_back" | "refused", "reason": ..., ...}`` to the next line.

On exit (end of file, ``--max-frames``, SIGINT or SIGTERM: exit 0) a summary goes to
stderr and, with ``--summary FILE``, to a JSON file (:mod:`deploy.report`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from deploy.options import CameraOptions
from deploy.sources import quiet_opencv
from edgeft.errors import UserError

__all__ = ["CameraOptions", "run_camera"]


class _Output:
    """JSON lines to stdout or a file, one flushed line per frame."""

    def __init__(self, path: Path | None):
        self.path = None if path is None or str(path) == "-" else Path(path)
        if self.path is not None:
            try:
                self.f = open(self.path, "w", buffering=1)  # noqa: SIM115 (closed in close())
            except OSError as exc:
                raise UserError(f"cannot write --out {self.path}: {exc.strerror}") from None
        else:
            self.f = sys.stdout
        self.closed = False

    def write(self, record: dict) -> None:
        self.f.write(json.dumps(record, separators=(",", ":")) + "\n")
        self.f.flush()

    def close(self) -> None:
        if self.path is not None and not self.closed:
            self.f.close()
        self.closed = True


def _validate(opts: CameraOptions):
    from deploy.annotate import check_video_path
    from deploy.capture import parse_roi
    from deploy.serve import parse_hostport

    if opts.top_k < 1:
        raise UserError(f"--top-k must be at least 1, not {opts.top_k}")
    if opts.smooth < 1:
        raise UserError(f"--smooth must be at least 1 (1: no smoothing), not {opts.smooth}")
    if opts.max_frames < 0 or opts.retries < 0 or opts.probation < 0:
        raise UserError("--max-frames, --retries and --probation must not be negative")
    if opts.watch_interval <= 0:
        raise UserError(f"--watch-interval must be positive, not {opts.watch_interval}")
    roi = parse_roi(opts.roi)
    hostport = parse_hostport(opts.serve) if opts.serve else None
    video = check_video_path(opts.video) if opts.video else None
    return roi, hostport, video, _bundle_path(opts)


def _bundle_path(opts: CameraOptions) -> Path:
    """The bundle to start with: BUNDLE, or what ``--bundle-dir``'s ``current`` names."""
    if opts.bundle_dir is None:
        if opts.bundle is None:
            raise UserError("give a bundle folder, or --bundle-dir DIR with a `current` link in it")
        return Path(opts.bundle)
    if opts.bundle is not None:
        raise UserError("give either a bundle folder or --bundle-dir, not both")
    current = Path(opts.bundle_dir) / "current"
    if not current.exists():
        raise UserError(
            f"--bundle-dir {opts.bundle_dir} has no `current` link to a bundle: "
            f"ln -sfn BUNDLE {current}"
        )
    return current.resolve()


def run_camera(opts: CameraOptions, log=None) -> dict:
    """Run the camera loop until the source ends, ``max_frames``, or SIGINT/SIGTERM.

    Returns:
        The summary dict (also printed to stderr).

    Raises:
        UserError: bad option, source, bundle or port (before anything runs); or the
            stream was lost and ``retries`` reconnects failed (after the summary).
    """
    quiet_opencv()
    from deploy.capture import log_stderr

    log = log or log_stderr
    roi, hostport, video_path, bundle_path = _validate(opts)
    from deploy.sources import parse_source

    src = parse_source(opts.source, opts.decoder)
    cleanup = []
    try:
        summary, grabber = _run(opts, log, roi, hostport, video_path, bundle_path, src, cleanup)
    finally:
        for fn in reversed(cleanup):
            fn()
    if grabber.error:  # e.g. a stream that did not come back within --retries
        raise UserError(grabber.error)
    return summary


def _run(opts, log, roi, hostport, video_path, bundle_path, src, cleanup):
    from deploy.capture import FrameGrabber
    from deploy.loop import CameraLoop
    from deploy.sources import open_capture
    from deploy.swap import BundleWatcher, ModelSlot, load_model

    server = state = None
    if hostport:
        server, state = _server(hostport, log, roi)
        cleanup.append(server.close)
    model = load_model(bundle_path, opts, gen=0)
    slot = ModelSlot(model, opts.probation, log)
    cleanup.append(slot.close)

    def prepare(img):  # in the capture thread: tagged with the model it was prepared for
        m = slot.active
        return m.gen, m.clf.prep(img, "BGR")

    grabber = FrameGrabber(
        src,
        open_capture(src),
        prepare=prepare,
        roi=roi,
        loop=opts.loop,
        realtime=opts.realtime,
        retries=opts.retries,
        log=log,
    )
    cleanup.append(grabber.stop)
    output = _Output(opts.out)
    cleanup.append(output.close)
    annot = None
    if video_path:
        from deploy.annotate import VideoAnnotator

        annot = VideoAnnotator(video_path, grabber.fps, roi)
        cleanup.append(annot.abort)
    watcher = BundleWatcher(slot, opts).start()
    cleanup.append(watcher.stop)
    loop = CameraLoop(opts, slot, src, grabber, output, state, annot, log, watcher)
    if server is not None:
        state.summary_fn = loop.summary
        state.reconnecting_fn = lambda: grabber.stats.reconnecting
        state.model_fn = slot.health
        state.info = {"source": src.describe()}
        loop.http_summary = server.summary
        server.start()
        loop.info.append(f"serving {server.url}/ (live view), /latest and /health")
    summary = loop.run()
    if annot is not None:
        annot.close()  # kept also when the stream was lost: its frames are complete
    return summary, grabber


def _server(hostport, log, roi):
    from deploy.serve import ResultState, is_loopback
    from deploy.web import WebServer

    host, port = hostport
    state = ResultState()
    server = WebServer(host, port, state, log, roi=roi)
    if not is_loopback(host):
        log(
            f"warning: --serve {host}:{server.port} listens beyond this machine and has no "
            "authentication: anyone who reaches the port sees the camera and its results "
            "(use 127.0.0.1 and a reverse proxy with authentication to share it)"
        )
    return server, state
