"""Latency statistics in constant memory, for a camera loop that may run for months.

Each stage keeps a histogram with logarithmic bins (1 us to 100 s, 0.5% wide) instead of
a list of samples, so a day at 100 fps costs the same memory as a minute; percentiles
are read from the histogram (within 0.5%), count, mean and max are exact.
"""

from __future__ import annotations

import math
import time

import numpy as np

_LO, _HI, _RATIO = 1e-6, 100.0, 1.005
_NBINS = int(math.ceil(math.log(_HI / _LO) / math.log(_RATIO))) + 2


class LatencyHistogram:
    """Durations in seconds; :meth:`summary` in milliseconds."""

    def __init__(self):
        self.counts = np.zeros(_NBINS, dtype=np.int64)
        self.n = 0
        self.total = 0.0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        s = max(float(seconds), 0.0)
        self.n += 1
        self.total += s
        self.max = max(self.max, s)
        i = 0 if s <= _LO else min(_NBINS - 1, int(math.log(s / _LO) / math.log(_RATIO)) + 1)
        self.counts[i] += 1

    def percentile(self, q: float) -> float | None:
        """The ``q``-th percentile (0-100) in seconds (bin centre), None when empty."""
        if not self.n:
            return None
        rank = max(1, math.ceil(q / 100.0 * self.n))
        i = int(np.searchsorted(np.cumsum(self.counts), rank))
        if i == 0:
            return _LO
        # bin i holds (LO * R**(i-1), LO * R**i]; report its geometric centre.
        return min(self.max, _LO * _RATIO ** (i - 0.5))

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None

    def summary(self) -> dict:
        """``{n, mean, p50, p90, p99, max}`` in milliseconds (None when empty)."""

        def ms(v):
            return None if v is None else round(v * 1e3, 4)

        return {
            "n": self.n,
            "mean": ms(self.mean),
            "p50": ms(self.percentile(50)),
            "p90": ms(self.percentile(90)),
            "p99": ms(self.percentile(99)),
            "max": ms(self.max if self.n else None),
        }


class StageStats:
    """One :class:`LatencyHistogram` per named stage."""

    def __init__(self, stages):
        self.stages = {name: LatencyHistogram() for name in stages}

    def add(self, **durations: float) -> None:
        for name, seconds in durations.items():
            self.stages[name].add(seconds)

    def mean(self, name: str) -> float:
        return self.stages[name].mean or 0.0

    def summary(self) -> dict:
        return {name: h.summary() for name, h in self.stages.items() if h.n}


class OutageLog:
    """Stream outages in constant memory: count, total and longest length, reconnect
    attempts, and the last few in detail.

    An outage runs from the last frame read before a loss to the first frame read after
    it (the gap a user of the results sees), or to the give-up when retries run out.
    """

    KEEP = 10

    def __init__(self):
        self.count = 0
        self.total_s = 0.0
        self.longest_s = 0.0
        self.attempts = 0
        self.recent: list[dict] = []
        self._open: dict | None = None

    @property
    def ongoing(self) -> bool:
        return self._open is not None

    def begin(self, since_wall: float | None) -> None:
        """A loss was detected; ``since_wall`` is the last frame's ``time.time()``."""
        if self._open is None:
            self._open = {"start": since_wall or time.time(), "attempts": 0}

    def attempt(self) -> None:
        """One reconnect attempt (successful or not)."""
        self.attempts += 1
        if self._open is not None:
            self._open["attempts"] += 1

    def end(self, recovered: bool = True) -> dict | None:
        """Close the open outage (first frame after it, or giving up); returns it."""
        o, self._open = self._open, None
        if o is None:
            return None
        o["length_s"] = round(max(0.0, time.time() - o["start"]), 3)
        o["start"] = round(o["start"], 3)
        o["recovered"] = recovered
        self.count += 1
        self.total_s += o["length_s"]
        self.longest_s = max(self.longest_s, o["length_s"])
        self.recent = [*self.recent, o][-self.KEEP :]
        return o

    def summary(self) -> dict:
        out = {
            "count": self.count,
            "total_s": round(self.total_s, 3),
            "longest_s": round(self.longest_s, 3),
            "reconnect_attempts": self.attempts,
            "recent": self.recent,
        }
        if self._open is not None:
            out["ongoing_since"] = round(self._open["start"], 3)
        return out
