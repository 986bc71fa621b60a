"""``edgeft camera``: classify a live source frame by frame, measuring where time goes.

Threads: the capture thread (:mod:`deploy.capture`) reads, crops and preprocesses
frames; this loop runs inference on the newest one and does the post-processing
(smoothing, top-k, output). Each frame's record is one JSON line::

    {"ts": 1732420000.123, "frame": 41, "top": [{"label": "Forest", "prob": 0.93}, ...],
     "latency_ms": {"capture": 2.1, "preprocess": 0.9, "wait": 0.1, "inference": 3.4,
                    "post": 0.05}, "age_ms": 6.8, "dropped": 0}

``ts`` is when the frame was read, ``frame`` its sequence number, ``capture`` the read
and decode, ``preprocess`` the ROI crop and bundle preprocessing (both in the capture
thread, overlapping the previous inference), ``wait`` how long this loop waited for the
frame, ``post`` smoothing and top-k (the line's own writing is in the summary's
``post``), ``age_ms`` the time from read to result: the latency a user sees.

On exit (end of file, ``--max-frames``, SIGINT or SIGTERM: exit 0) a summary goes to
stderr and, with ``--summary FILE``, to a JSON file: frames, drops, FPS, percentiles per
stage, and the loop's overhead: the share of frame time not spent in inference.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np

from deploy.options import CameraOptions
from deploy.sources import quiet_opencv
from edgeft.errors import UserError

STAGES = ("capture", "preprocess", "wait", "inference", "post")


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
    if opts.max_frames < 0 or opts.retries < 0:
        raise UserError("--max-frames and --retries must not be negative")
    roi = parse_roi(opts.roi)
    hostport = parse_hostport(opts.serve) if opts.serve else None
    video = check_video_path(opts.video) if opts.video else None
    return roi, hostport, video


def run_camera(opts: CameraOptions, log=None) -> dict:
    """Run the camera loop until the source ends, ``max_frames``, or SIGINT/SIGTERM.

    Returns:
        The summary dict (also printed to stderr).

    Raises:
        UserError: bad option, source, bundle or port (before anything runs); or the
            stream was lost and ``retries`` reconnects failed (after the summary).
    """
    quiet_opencv()
    from deploy.capture import FrameGrabber, log_stderr
    from deploy.sources import open_capture, parse_source

    log = log or log_stderr
    roi, hostport, video_path = _validate(opts)
    src = parse_source(opts.source)
    cleanup = []
    try:
        server = state = None
        if hostport:
            from deploy.serve import ResultServer, ResultState

            state = ResultState()
            server = ResultServer(*hostport, state)
            cleanup.append(server.close)
        from edgeft.runtime import Classifier

        clf = Classifier.load(
            opts.bundle,
            backend=opts.backend,
            device=opts.device,
            threads=opts.threads,
            trust_modified=opts.trust_modified,
        )
        cleanup.append(clf.close)
        h, w = clf.bundle.preprocessing.size
        for _ in range(2):  # warm-up: first runs allocate; keep them out of the statistics
            clf.probabilities(np.zeros((1, 3, h, w), dtype=np.float32))
        cap = open_capture(src)
        grabber = FrameGrabber(
            src,
            cap,
            prepare=lambda img: clf.prep(img, "BGR"),
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
        loop = _Loop(opts, clf, src, grabber, output, state, annot, log)
        if server is not None:
            state.summary_fn = loop.summary
            state.reconnecting_fn = lambda: grabber.stats.reconnecting
            state.info = {"backend": clf.backend, "source": src.describe()}
            server.start()
            loop.info.append(f"serving {server.url}/latest and /health")
        summary = loop.run()
        if annot is not None:
            annot.close()  # kept also when the stream was lost: its frames are complete
    finally:
        for fn in reversed(cleanup):
            fn()
    if grabber.error:  # e.g. a stream that did not come back within --retries
        raise UserError(grabber.error)
    return summary


class _Loop:
    def __init__(self, opts, clf, src, grabber, output, state, annot, log):
        from deploy.stats import LatencyHistogram, StageStats

        self.opts, self.clf, self.src, self.grabber = opts, clf, src, grabber
        self.output, self.state, self.annot, self.log = output, state, annot, log
        self.stats = StageStats(STAGES)
        self.frame_time = LatencyHistogram()
        self.age = LatencyHistogram()
        self.frames = 0
        self.end = None
        self.info: list[str] = []
        self.t_first = self.t_last = None
        self._stop = threading.Event()
        self._window: deque = deque(maxlen=max(1, opts.smooth))
        self._reconnects_seen = 0

    def _on_signal(self, signum, _frame) -> None:
        self.end = f"signal {signal.Signals(signum).name}"
        self._stop.set()

    def run(self) -> dict:
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                handlers[sig] = signal.signal(sig, self._on_signal)
        try:
            self.grabber.start()
            self._loop()
        finally:
            self.grabber.stop()
            for sig, old in handlers.items():
                signal.signal(sig, old)
        if self.grabber.exception is not None:
            raise self.grabber.exception
        if self.grabber.error and not self.frames:
            raise UserError(self.grabber.error)
        summary = self.summary()
        self._print(summary)
        if self.opts.summary:
            from edgeft.atomic import write_json_atomic

            write_json_atomic(Path(self.opts.summary), summary)
        return summary

    def _loop(self) -> None:
        g, clf = self.grabber, self.clf
        t_prev = time.perf_counter()
        while not self._stop.is_set():
            frame = g.get(timeout=0.25)
            if frame is None:
                if g.finished.is_set():
                    self.end = self.end or g.end_reason or ("error" if g.error else "source ended")
                    return
                continue
            t1 = time.perf_counter()
            probs = clf.probabilities(frame.input[None])[0]
            t2 = time.perf_counter()
            probs = self._smooth(probs)
            res = clf.top_k(probs, self.opts.top_k)[0]
            t3 = time.perf_counter()
            record = {
                "ts": round(frame.wall, 6),
                "frame": frame.id,
                **res.to_dict(),
                "latency_ms": {
                    "capture": _ms(frame.capture_s),
                    "preprocess": _ms(frame.preprocess_s),
                    "wait": _ms(t1 - t_prev),
                    "inference": _ms(t2 - t1),
                    "post": _ms(t3 - t2),
                },
                "age_ms": _ms(t3 - frame.t_read),
                "dropped": g.stats.dropped,
            }
            if self.opts.smooth > 1:
                record["smoothed"] = len(self._window)
            try:
                self.output.write(record)
            except BrokenPipeError:  # `edgeft camera ... | head`: the reader is gone
                _silence_stdout()
                self.end = "output closed"
                return
            if self.state is not None:
                self.state.update(record)
            if self.annot is not None:
                self.annot.write(frame.image, record)
            t4 = time.perf_counter()
            self.frames += 1
            self.stats.add(
                capture=frame.capture_s,
                preprocess=frame.preprocess_s,
                inference=t2 - t1,
                post=t4 - t2,
            )
            self.age.add(t3 - frame.t_read)
            if self.frames > 1:  # the first frame's wait includes the source's start-up
                self.stats.add(wait=t1 - t_prev)
                self.frame_time.add(t4 - t_prev)
            else:
                self.t_first = t4
                self.log(
                    f"running: {self.clf.backend} on {self.clf.device}, source {self.src.describe()}"
                    + "".join(f"; {i}" for i in self.info)
                )
            self.t_last = t_prev = t4
            if self.opts.max_frames and self.frames >= self.opts.max_frames:
                self.end = "max frames"
                return

    def _smooth(self, probs: np.ndarray) -> np.ndarray:
        if self.opts.smooth <= 1:
            return probs
        if self.grabber.stats.reconnects != self._reconnects_seen:  # frames before a loss are stale
            self._reconnects_seen = self.grabber.stats.reconnects
            self._window.clear()
        self._window.append(probs)
        return np.mean(self._window, axis=0)

    def summary(self) -> dict:
        """Frames, drops, FPS, per-stage percentiles and the loop's overhead."""
        s = self.grabber.stats
        elapsed = (self.t_last - self.t_first) if self.frames > 1 else None
        lat = self.stats.summary()
        lat["frame_time"] = self.frame_time.summary()
        lat["age"] = self.age.summary()
        out = {
            "frames": self.frames,
            "read": s.read,
            "dropped": s.dropped,
            "reconnects": s.reconnects,
            "losses": s.losses,
            "loops": s.loops,
            "end": self.end,
            "elapsed_s": None if elapsed is None else round(elapsed, 3),
            "fps": round((self.frames - 1) / elapsed, 2) if elapsed else None,
            "backend": self.clf.describe(),
            "source": self.src.describe(),
            "latency_ms": lat,
        }
        ft, inf = self.frame_time.mean, self.stats.mean("inference")
        if ft:
            cap, pre, post = (self.stats.mean(k) for k in ("capture", "preprocess", "post"))
            out["overhead"] = {
                # what the loop costs above pure inference, as measured
                "share": round(max(0.0, 1 - inf / ft), 4),
                "wait_share": round(self.stats.mean("wait") / ft, 4),
                # what capture + preprocess + post would cost if they ran in this loop
                "serial_share": round((cap + pre + post) / (cap + pre + inf + post), 4),
            }
            if self.src.live:
                out["overhead"]["note"] = (
                    "live source: waiting for the camera is idle time, not overhead"
                )
        if s.notes or self.grabber.error:
            out["notes"] = [*s.notes, *([self.grabber.error] if self.grabber.error else [])]
        return out

    def _print(self, sm: dict) -> None:
        fps = f"{sm['fps']:.1f} fps" if sm["fps"] else "- fps"
        lines = [
            f"{sm['frames']} frames in {sm['elapsed_s'] or 0:.2f} s ({fps}); read {sm['read']}, "
            f"dropped {sm['dropped']}, reconnects {sm['reconnects']}; ended: {sm['end']}"
        ]
        lines.append(f"  {'stage (ms)':<12}{'p50':>9}{'p90':>9}{'p99':>9}{'mean':>9}")
        for name, st in sm["latency_ms"].items():
            if st.get("n"):
                lines.append(
                    f"  {name:<12}"
                    + "".join(f"{st[k]:>9.3f}" for k in ("p50", "p90", "p99", "mean"))
                )
        if "overhead" in sm:
            o = sm["overhead"]
            lines.append(
                f"  overhead over inference: {100 * o['share']:.1f}% of frame time "
                f"(waiting {100 * o['wait_share']:.1f}%; run serially capture+preprocess+post "
                f"would be {100 * o['serial_share']:.1f}%)"
                + (f"; {o['note']}" if "note" in o else "")
            )
        self.log("\n".join(lines))


def _ms(seconds: float) -> float:
    return round(seconds * 1e3, 3)


def _silence_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
