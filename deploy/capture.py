"""The capture thread: reads frames as they come and hands the camera loop the newest one.

Live sources (cameras, streams) are read continuously; when the loop is busy and a newer
frame arrives, the older one is dropped (and counted), so inference always sees the
newest picture instead of working through a backlog. Files are read in lockstep by
default (every frame processed, none dropped) unless ``realtime`` paces them like a
camera at their own frame rate.

The thread also does the per-frame work that does not need the model (ROI crop and
the bundle's preprocessing), so it overlaps with inference of the previous frame.

A live source that stops delivering is reopened with exponential backoff (0.5 s, 1 s,
2 s ... up to 10 s), each attempt logged in one line; ``retries`` bounds the attempts
(0: forever, which is what a service wants).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from deploy.sources import Source, SourceError, open_capture
from deploy.stats import OutageLog
from edgeft.errors import UserError


def log_stderr(msg: str) -> None:
    """Default logger: one line on stderr."""
    sys.stderr.write(f"edgeft camera: {msg}\n")
    sys.stderr.flush()


@dataclass
class Frame:
    """One captured frame and what the capture thread did with it.

    Attributes:
        id: sequence number over the run (0, 1, ...; continues across loops and
            reconnects), so a file's frame ``i`` has id ``i`` on its first pass.
        image: the BGR frame as read.
        wall: ``time.time()`` when the read returned.
        t_read: ``time.perf_counter()`` when the read returned.
        capture_s: how long the read (grab + decode) took.
        preprocess_s: time spent in ``prepare``.
        input: ``prepare``'s output for the (ROI of the) frame, if a ``prepare`` was given.
    """

    id: int
    image: np.ndarray
    wall: float
    t_read: float
    capture_s: float
    preprocess_s: float = 0.0
    input: np.ndarray | None = None


@dataclass
class CaptureStats:
    """Counters the camera summary reports."""

    read: int = 0
    dropped: int = 0
    reconnects: int = 0
    losses: int = 0
    loops: int = 0
    reconnecting: bool = False
    notes: list[str] = field(default_factory=list)
    outages: OutageLog = field(default_factory=OutageLog)


def parse_roi(text: str | None) -> tuple[int, int, int, int] | None:
    """``"x,y,w,h"`` (pixels) -> tuple, or None.

    Raises:
        UserError: not four non-negative integers with positive width and height.
    """
    if not text:
        return None
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise UserError(
            f"--roi {text!r}: use x,y,w,h in pixels, e.g. --roi 160,120,320,240"
        ) from None
    if min(x, y) < 0 or w <= 0 or h <= 0:
        raise UserError(f"--roi {text}: x and y must be >= 0, width and height > 0")
    return x, y, w, h


class FrameGrabber:
    """Reads ``source`` in a daemon thread; :meth:`get` returns the newest unseen frame.

    Args:
        source: the parsed source.
        cap: an opened ``cv2.VideoCapture`` for it (the caller opens the first one so
            that a bad source fails before anything starts).
        prepare: ``image -> model input``, run in this thread on each frame (after ROI).
        roi: ``(x, y, w, h)`` to crop before ``prepare``.
        drop_stale: keep only the newest frame (default: for live sources).
        loop: restart files at the end.
        realtime: pace files at their frame rate (as a camera would deliver them).
        retries: reconnect attempts per loss before giving up (0: forever).
        backoff: ``(first, max)`` delay in seconds between attempts.
        opener: ``source -> cap`` used to reconnect (default :func:`open_capture`).
        log: one-line logger.
    """

    def __init__(
        self,
        source: Source,
        cap,
        *,
        prepare: Callable | None = None,
        roi: tuple[int, int, int, int] | None = None,
        drop_stale: bool | None = None,
        loop: bool = False,
        realtime: bool = False,
        retries: int = 0,
        backoff: tuple[float, float] = (0.5, 10.0),
        opener: Callable = open_capture,
        log: Callable[[str], None] = log_stderr,
    ):
        self.source, self.cap, self.prepare, self.roi = source, cap, prepare, roi
        self.drop_stale = source.live or realtime if drop_stale is None else drop_stale
        # Pacing only makes sense for files: a live source delivers at its own rate.
        self.loop, self.realtime = loop, realtime and not source.live
        self.retries, self.backoff = retries, backoff
        self.opener, self.log = opener, log
        self.stats = CaptureStats()
        self.error: str | None = None
        self.exception: BaseException | None = None
        self.end_reason: str | None = None
        self.finished = threading.Event()
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._slot: Frame | None = None
        self._next_id = 0
        self._pass_frames = 0
        self._delay = backoff[0]
        self._last_frame_wall: float | None = None
        self._thread = threading.Thread(target=self._run, name="edgeft-capture", daemon=True)
        self.fps = self._prop_fps()

    # -- consumer side ---------------------------------------------------------------
    def start(self) -> FrameGrabber:
        self._thread.start()
        return self

    def get(self, timeout: float = 0.5) -> Frame | None:
        """The newest frame not yet returned, waiting up to ``timeout`` s; None if none came
        (check :attr:`finished`)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._slot is None:
                if self.finished.is_set() or self._stop.is_set():
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
            frame, self._slot = self._slot, None
            self._cond.notify_all()
            return frame

    def stop(self, timeout: float = 2.0) -> None:
        """Ask the thread to end and wait briefly (a read blocked in the driver may not
        return; the thread is a daemon and cannot keep the process alive)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def last_frame_age(self) -> float | None:
        """Seconds since the last frame was read (None before the first)."""
        return None if self._last_frame_wall is None else time.time() - self._last_frame_wall

    # -- capture thread ----------------------------------------------------------------
    def _prop_fps(self) -> float:
        try:
            import cv2

            fps = float(self.cap.get(cv2.CAP_PROP_FPS))
        except Exception:
            return 0.0
        return fps if 0 < fps < 1000 else 0.0

    def _run(self) -> None:
        try:
            t_start, n_paced = time.perf_counter(), 0
            while not self._stop.is_set():
                if self.realtime and self.fps:
                    delay = t_start + n_paced / self.fps - time.perf_counter()
                    if delay > 0 and self._stop.wait(delay):
                        break
                    n_paced += 1
                t0 = time.perf_counter()
                ok, image = self.cap.read()
                t1 = time.perf_counter()
                if ok and image is not None:
                    self._publish(image, t0, t1)
                elif not self._source_ended():
                    break
        except UserError as exc:
            self.error = str(exc)
        except BaseException as exc:  # a bug: the camera loop re-raises it with its traceback
            self.exception = exc
        finally:
            try:
                if self.cap is not None:
                    self.cap.release()
            finally:
                self.finished.set()
                with self._cond:
                    self._cond.notify_all()

    def _publish(self, image: np.ndarray, t0: float, t1: float) -> None:
        if self.stats.outages.ongoing:  # the first frame after a loss ends the outage
            o = self.stats.outages.end()
            self.log(
                f"frames again after a {o['length_s']:.1f} s outage ({o['attempts']} reconnect attempt(s))"
            )
        self.stats.read += 1
        self._pass_frames += 1
        self._last_frame_wall = time.time()
        frame = Frame(self._next_id, image, self._last_frame_wall, t1, t1 - t0)
        self._next_id += 1
        if self.prepare is not None:
            region = self.crop(image)
            t2 = time.perf_counter()
            frame.input = self.prepare(region)
            frame.preprocess_s = time.perf_counter() - t2
        with self._cond:
            if self.drop_stale:
                if self._slot is not None:
                    self.stats.dropped += 1
            else:
                while self._slot is not None and not self._stop.is_set():
                    self._cond.wait(0.1)
            self._slot = frame
            self._cond.notify_all()

    def crop(self, image: np.ndarray) -> np.ndarray:
        """The ROI of a frame (the frame itself without ``roi``)."""
        if self.roi is None:
            return image
        x, y, w, h = self.roi
        H, W = image.shape[:2]
        if x + w > W or y + h > H:
            raise UserError(
                f"--roi {x},{y},{w},{h} does not fit in the {W}x{H} frame of {self.source.spec}"
            )
        return image[y : y + h, x : x + w]

    def _source_ended(self) -> bool:
        """Handle a failed read; True to go on reading, False to end the thread."""
        if self._stop.is_set():
            return False
        if not self.source.live:
            return self._file_ended()
        self.stats.losses += 1
        self.stats.outages.begin(self._last_frame_wall)
        self.log(f"{self.source.describe()} lost after {self._pass_frames} frames; reconnecting")
        # A source that reopens but then delivers nothing keeps backing off instead of
        # being hammered every half second.
        first = self.backoff[0] if self._pass_frames else min(self.backoff[1], self._delay * 2)
        return self._reconnect(first)

    def _file_ended(self) -> bool:
        import cv2

        if self._pass_frames == 0:
            self.error = f"video file {self.source.target} has no readable frames"
            return False
        total = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        if total and self._pass_frames < total - 1 and self.stats.loops == 0:
            note = f"video file {self.source.target} ended after {self._pass_frames} of {total} frames (truncated?)"
            self.stats.notes.append(note)
            self.log(note)
        if not self.loop:
            self.end_reason = "end of file"
            return False
        self.stats.loops += 1
        self._pass_frames = 0
        # Seeking is cheaper than reopening; reopen where the container cannot seek.
        if not self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0):
            self.cap.release()
            self.cap = self.opener(self.source)
        return True

    def _reconnect(self, delay: float) -> bool:
        self.stats.reconnecting = True
        if self.cap is not None:
            self.cap.release()
            self.cap = None
        attempt = 0
        while not self._stop.is_set():
            attempt += 1
            self._delay = delay
            if self._stop.wait(delay):
                return False
            self.stats.outages.attempt()
            try:
                self.cap = self.opener(self.source)
            except SourceError as exc:
                if self.retries and attempt >= self.retries:
                    self.error = (
                        f"{self.source.describe()} lost; gave up after {attempt} reconnect "
                        f"attempts ({exc})"
                    )
                    self.end_reason = "stream lost"
                    self.stats.outages.end(recovered=False)
                    return False
                delay = min(self.backoff[1], delay * 2)
                self.log(f"reconnect attempt {attempt} failed ({exc}); next in {delay:.1f} s")
                continue
            self.stats.reconnects += 1
            self.stats.reconnecting = False
            self._pass_frames = 0
            self.log(f"reconnected to {self.source.describe()} after {attempt} attempt(s)")
            return True
        return False
