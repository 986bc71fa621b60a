"""The camera loop: inference on the newest frame, post-processing, one JSON line per frame.

Runs in the main thread of ``edgeft camera`` (:func:`deploy.camera.run_camera` sets it up);
the capture thread (:mod:`deploy.capture`) has already read, cropped and prepared the
frame; the model comes from :class:`deploy.swap.ModelSlot`, which may swap a verified
new bundle in between two frames.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np

from deploy.report import build_summary, format_summary
from deploy.stats import LatencyHistogram, StageStats
from edgeft.errors import UserError

STAGES = ("capture", "preprocess", "wait", "inference", "post")


class CameraLoop:
    """The frame loop and its statistics (see :mod:`deploy.camera` for the record format)."""

    def __init__(self, opts, slot, src, grabber, output, state, annot, log, watcher=None):
        self.opts, self.slot, self.src, self.grabber = opts, slot, src, grabber
        self.output, self.state, self.annot, self.log = output, state, annot, log
        self.watcher = watcher
        self.http_summary = None  # set by run_camera when serving
        self.stats = StageStats(STAGES)
        self.frame_time, self.age = LatencyHistogram(), LatencyHistogram()
        self.frames = self.invalid = 0
        self.end = None
        self.info: list[str] = []
        self.t_first = self.t_last = None
        self._stop = threading.Event()
        self._window: deque = deque(maxlen=max(1, opts.smooth))
        self._reconnects_seen = 0
        self._gen_seen = slot.active.gen

    def _on_signal(self, signum, _frame) -> None:
        self.end = f"signal {signal.Signals(signum).name}"
        self._stop.set()

    def _on_hup(self, _signum, _frame) -> None:
        if self.watcher is not None:
            self.watcher.kick.set()

    def run(self) -> dict:
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                handlers[sig] = signal.signal(sig, self._on_signal)
            handlers[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._on_hup)
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
        self.log(format_summary(summary))
        if self.opts.summary:
            from edgeft.atomic import write_json_atomic

            write_json_atomic(Path(self.opts.summary), summary)
        return summary

    def _loop(self) -> None:
        g = self.grabber
        t_prev = time.perf_counter()
        while not self._stop.is_set():
            frame = g.get(timeout=0.25)
            if frame is None:
                if g.finished.is_set():
                    self.end = self.end or g.end_reason or ("error" if g.error else "source ended")
                    return
                continue
            t1 = time.perf_counter()
            record, probs_s, t2 = self._classify(frame)
            t3 = time.perf_counter()
            record["latency_ms"].update(
                wait=_ms(t1 - t_prev), inference=_ms(probs_s), post=_ms(t3 - t2)
            )
            record["age_ms"] = _ms(t3 - frame.t_read)
            try:
                self.output.write(record)
            except BrokenPipeError:  # `edgeft camera ... | head`: the reader is gone
                _silence_stdout()
                self.end = "output closed"
                return
            if self.state is not None:
                self.state.update(record, frame.image)
            if self.annot is not None:
                self.annot.write(frame.image, record)
            t4 = time.perf_counter()
            self._account(frame, t_prev, t1, probs_s, t2, t3, t4)
            self.t_last = t_prev = t4
            if self.opts.max_frames and self.frames >= self.opts.max_frames:
                self.end = "max frames"
                return

    def _classify(self, frame) -> tuple[dict, float, float]:
        """Run the model on a frame (again with the previous model if a candidate on
        probation rolls back on it); returns the record, inference seconds, post start."""
        model = self.slot.begin_frame()
        t_inf, pre_s = 0.0, frame.preprocess_s
        while True:
            gen, x = frame.input
            if gen != model.gen:  # prepared for the model before a swap: prepare again
                t = time.perf_counter()
                x = model.clf.prep(self.grabber.crop(frame.image), "BGR")
                pre_s += time.perf_counter() - t
            t = time.perf_counter()
            probs = model.clf.probabilities(x[None])[0]
            t_inf += time.perf_counter() - t
            back = self.slot.after_frame(probs)
            if back is None:
                break
            model = back
        t2 = time.perf_counter()
        record = {"ts": round(frame.wall, 6), "frame": frame.id, "model": model.sha256[:12]}
        if np.isfinite(probs).all():
            record.update(
                model.clf.top_k(self._smooth(probs, model.gen), self.opts.top_k)[0].to_dict()
            )
        else:  # never NaN in a JSON line: say what happened instead
            self.invalid += 1
            record.update(top=[], error="the model's outputs are not finite")
        record["latency_ms"] = {"capture": _ms(frame.capture_s), "preprocess": _ms(pre_s)}
        record["dropped"] = self.grabber.stats.dropped
        if self.opts.smooth > 1:
            record["smoothed"] = len(self._window)
        event = self.slot.take_event()
        if event is not None:
            record["swap"] = event
        return record, t_inf, t2

    def _account(self, frame, t_prev, t1, inf_s, t2, t3, t4) -> None:
        self.frames += 1
        self.stats.add(
            capture=frame.capture_s, preprocess=frame.preprocess_s, inference=inf_s, post=t4 - t2
        )
        self.age.add(t3 - frame.t_read)
        if self.frames > 1:  # the first frame's wait includes the source's start-up
            self.stats.add(wait=t1 - t_prev)
            self.frame_time.add(t4 - t_prev)
        else:
            self.t_first = t4
            m = self.slot.active
            self.log(
                f"running: {m.clf.backend} on {m.clf.device}, bundle {m.name} ({m.sha256[:12]}), "
                f"source {self.src.describe()}"
                + _decoder(self.src)
                + "".join(f"; {i}" for i in self.info)
            )

    def _smooth(self, probs: np.ndarray, gen: int) -> np.ndarray:
        if self.opts.smooth <= 1:
            return probs
        reconnects = self.grabber.stats.reconnects
        if reconnects != self._reconnects_seen or gen != self._gen_seen:  # stale or another model
            self._reconnects_seen, self._gen_seen = reconnects, gen
            self._window.clear()
        self._window.append(probs)
        return np.mean(self._window, axis=0)

    def summary(self) -> dict:
        """Frames, drops, outages, FPS, per-stage percentiles, the loop's overhead, swaps."""
        return build_summary(self)


def _decoder(src) -> str:
    if src.kind != "stream" or not src.opened_with:
        return ""
    return f" (decoded by {src.opened_with}" + (
        f": {src.pipeline})" if src.opened_with == "gstreamer" else ")"
    )


def _ms(seconds: float) -> float:
    return round(seconds * 1e3, 3)


def _silence_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
