"""Run ``tegrastats`` in the background during a bench and parse its lines as they come
(:func:`benchmarks.tegrastats.parse_line`)."""

from __future__ import annotations

import collections
import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time

from benchmarks.tegrastats import _has_data, parse_line, summarize
from edgeft.errors import UserError


class TegrastatsUnavailable(UserError):
    """tegrastats cannot be started here: this machine is not a Jetson (or lacks the tool)."""


class TegrastatsError(UserError):
    """tegrastats started but failed before printing a single usable line."""


class TegrastatsSampler:
    """Run ``tegrastats --interval MS`` in the background and collect parsed samples.

    Use as a context manager around the timed runs; after the block, :attr:`samples`
    holds the parsed lines (each with ``received_s``, seconds since the sampler
    started) and :meth:`summary` summarizes them::

        with TegrastatsSampler(interval_ms=200) as sampler:
            run_timed_iterations()
        report["jetson_power"] = sampler.summary()

    ``executable`` is a name looked up on ``PATH`` (and in /usr/bin, /usr/sbin) or a path,
    so tests can point it at a script that prints recorded lines. When it is not found,
    :class:`TegrastatsUnavailable` says this is not a Jetson. The process is started in
    its own session and stopped with SIGTERM to that process group (SIGKILL after
    ``stop_timeout_s``).
    """

    def __init__(
        self, interval_ms: int = 500, executable: str = "tegrastats", stop_timeout_s: float = 5.0
    ):
        if interval_ms <= 0:
            raise ValueError("interval_ms must be positive")
        self.interval_ms = int(interval_ms)
        self.executable = executable
        self.stop_timeout_s = stop_timeout_s
        self.unparsed_lines = 0
        self._tail: collections.deque[str] = collections.deque(maxlen=5)
        self._samples: list[dict] = []
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self._t0 = 0.0

    def _resolve(self) -> str | None:
        if os.sep in self.executable:
            ok = os.path.isfile(self.executable) and os.access(self.executable, os.X_OK)
            return self.executable if ok else None
        extra = os.pathsep.join(("/usr/bin", "/usr/sbin"))
        path = os.environ.get("PATH", "")
        return shutil.which(self.executable, path=f"{path}{os.pathsep}{extra}" if path else extra)

    def start(self) -> TegrastatsSampler:
        """Start tegrastats and the reader thread."""
        if self._proc is not None:
            raise RuntimeError("this sampler was already started")
        exe = self._resolve()
        if exe is None:
            raise TegrastatsUnavailable(
                f"'{self.executable}' not found: this machine does not look like an NVIDIA "
                "Jetson (tegrastats ships with Jetson Linux). Benchmark with --device cpu or "
                "--device cuda here, or run on a Jetson."
            )
        self._t0 = time.monotonic()
        self._proc = subprocess.Popen(
            [exe, "--interval", str(self.interval_ms)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        self._thread = threading.Thread(target=self._read, name="tegrastats-reader", daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            sample = parse_line(line)
            if not _has_data(sample):
                self.unparsed_lines += 1
                self._tail.append(line.strip())
                continue
            sample["received_s"] = round(time.monotonic() - self._t0, 3)
            with self._lock:
                self._samples.append(sample)

    def stop(self) -> list[dict]:
        """Stop tegrastats, wait for the reader, and return the samples collected."""
        proc = self._proc
        if proc is None:
            return self.samples
        exited_alone = proc.poll() is not None
        if not exited_alone:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self._thread is not None:
            self._thread.join(timeout=self.stop_timeout_s)
        if proc.stdout is not None:
            proc.stdout.close()
        if exited_alone and proc.returncode != 0 and not self._samples:
            said = " | ".join(self._tail) or "no output"
            raise TegrastatsError(f"tegrastats exited with status {proc.returncode}: {said}")
        return self.samples

    @property
    def samples(self) -> list[dict]:
        """A copy of the samples collected so far."""
        with self._lock:
            return list(self._samples)

    def summary(self, **kwargs) -> dict:
        """:func:`summarize` over :attr:`samples`, plus ``interval_ms`` and ``unparsed_lines``."""
        result = summarize(self.samples, **kwargs)
        result["interval_ms"] = self.interval_ms
        result["unparsed_lines"] = self.unparsed_lines
        return result

    def __enter__(self) -> TegrastatsSampler:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
