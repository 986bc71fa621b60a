"""Latency per backend and batch size: model only, and end to end from image files.

* **model**: ``runner.infer`` on a batch already decoded and preprocessed (real images
  from the bench's labelled set). It includes what ``infer`` does on every call: copying
  the numpy batch to the device and the outputs back.
* **e2e**: decode each image file (Pillow), preprocess it with the bundle's contract
  (:mod:`edgeft.preprocess`, the same code the runtime uses), stack, and infer: what a
  device spends per batch of files.

Each measurement warms up first (lazy initialisation, allocator growth, caches, GPU
clock ramp-up), then times ``runs`` calls, or as many as fit in ``seconds``, with the
garbage collector paused. :func:`time.perf_counter` times each call; runners with a
``synchronize()`` are synchronised before and after it, so queued GPU work is neither
left out nor counted twice. PyTorch runners on a CUDA device are timed with CUDA events
instead (:class:`CudaEventTimer`), and the peak GPU memory of their timed calls is
recorded (:class:`GpuMemory`); only they ever touch ``torch.cuda``.
"""

from __future__ import annotations

import gc
import itertools
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import numpy as np

from edgeft.parity import fold_input
from edgeft.preprocess import Preprocessing, image_to_input, load_rgb

#: --seconds still times at least this many calls, so percentiles mean something.
MIN_RUNS_FOR_SECONDS = 3
#: Devices whose PyTorch runners are timed with CUDA events.
CUDA_DEVICES = ("cuda", "jetson")


def time_calls(
    fn: Callable[[], object],
    *,
    warmup: int,
    runs: int | None = None,
    seconds: float | None = None,
    sync: Callable[[], None] | None = None,
    timer: CudaEventTimer | None = None,
) -> list[float]:
    """Call ``fn`` ``warmup`` times untimed, then time ``runs`` calls (or calls for ``seconds``).

    Args:
        sync: waits for the runner's queued device work (around each wall-clock timed call).
        timer: times each call with CUDA events instead of the wall clock (``sync`` then
            only drains the warm-up).

    Returns:
        Each timed call's duration in milliseconds.
    """
    if (runs is None) == (seconds is None):
        raise ValueError("give exactly one of runs and seconds")
    sync = sync or (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    samples: list[float] = []
    was_enabled = gc.isenabled()
    gc.disable()  # a collection inside a timed call is noise, not the model's cost
    try:
        deadline = time.perf_counter() + seconds if seconds is not None else None
        while True:
            if runs is not None and len(samples) >= runs:  # runs=0: warm-up only
                break
            if (
                deadline is not None
                and len(samples) >= MIN_RUNS_FOR_SECONDS
                and time.perf_counter() >= deadline
            ):
                break
            samples.append(timer.time(fn) if timer is not None else _wall_ms(fn, sync))
    finally:
        if was_enabled:
            gc.enable()
    return samples


def _wall_ms(fn: Callable[[], object], sync: Callable[[], None]) -> float:
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return (time.perf_counter() - t0) * 1e3


class CudaEventTimer:
    """Times one call with a pair of CUDA events on the current stream.

    The device is synchronised first (no earlier work inside the interval), the start
    event is recorded, the call runs, the end event is recorded, and the host waits for
    the end event before reading the elapsed time (``Event.elapsed_time``, milliseconds).

    Args:
        cuda: the ``torch.cuda`` module (a stand-in in tests).
    """

    name = "cuda-events"

    def __init__(self, cuda):
        self.cuda = cuda
        self.start = cuda.Event(enable_timing=True)
        self.end = cuda.Event(enable_timing=True)

    def time(self, fn: Callable[[], object]) -> float:
        """Milliseconds between the events recorded around ``fn()``."""
        self.cuda.synchronize()
        self.start.record()
        fn()
        self.end.record()
        self.end.synchronize()
        return float(self.start.elapsed_time(self.end))


class GpuMemory:
    """Peak GPU memory of one backend's timed segments (PyTorch's caching allocator).

    Peaks are reset before each segment and read after it. ``resident_bytes`` is what was
    allocated when the segment began (every activated backend's weights), so
    ``working_bytes`` (peak minus resident) is what this backend's calls needed on top.

    Args:
        cuda: the ``torch.cuda`` module (a stand-in in tests).
    """

    def __init__(self, cuda):
        self.cuda = cuda
        self.peak = self.reserved = 0
        self.resident: int | None = None

    @contextmanager
    def segment(self):
        """Measure the code inside the ``with`` block."""
        self.cuda.synchronize()
        self.cuda.reset_peak_memory_stats()
        resident = int(self.cuda.memory_allocated())
        yield
        self.cuda.synchronize()
        peak = int(self.cuda.max_memory_allocated())
        if peak >= self.peak:
            self.peak, self.resident = peak, resident
        self.reserved = max(self.reserved, int(self.cuda.max_memory_reserved()))

    def result(self) -> dict:
        """``{peak_allocated_bytes, peak_reserved_bytes, resident_bytes, working_bytes}``."""
        resident = self.resident or 0
        return {
            "peak_allocated_bytes": self.peak,
            "peak_reserved_bytes": self.reserved,
            "resident_bytes": resident,
            "working_bytes": self.peak - resident,
        }


def cuda_module(runner):
    """``torch.cuda`` for a PyTorch runner on a CUDA device; ``None`` for every other runner.

    CPU runs (and ONNX Runtime or TensorRT runners, whose memory and streams are not
    PyTorch's) return before ``torch`` is imported.
    """
    if getattr(runner, "device", "cpu") not in CUDA_DEVICES:
        return None
    describe = getattr(runner, "describe", None)
    if describe is None or describe().get("framework") != "pytorch":
        return None
    import torch

    return torch.cuda if torch.cuda.is_available() else None


def summarize(samples_ms: list[float], batch_size: int) -> dict:
    """Mean, percentiles, spread and throughput of timed calls, with the raw samples."""
    a = np.asarray(samples_ms, dtype=np.float64)
    mean = float(a.mean())
    return {
        "runs": int(a.size),
        "mean_ms": mean,
        "p50_ms": float(np.percentile(a, 50)),
        "p90_ms": float(np.percentile(a, 90)),
        "p99_ms": float(np.percentile(a, 99)),
        "std_ms": float(a.std(ddof=1)) if a.size > 1 else 0.0,
        "min_ms": float(a.min()),
        "max_ms": float(a.max()),
        "throughput_ips": batch_size * 1e3 / mean if mean > 0 else None,
        "samples_ms": [round(float(v), 4) for v in a],
    }


def model_batch(
    x: np.ndarray, batch_size: int, normalized_input: bool, pp: Preprocessing
) -> np.ndarray:
    """A ``batch_size`` batch of real preprocessed images (repeated when there are fewer)."""
    idx = np.arange(batch_size) % len(x)
    batch = np.ascontiguousarray(x[idx], dtype=np.float32)
    return (
        batch if normalized_input else np.ascontiguousarray(fold_input(batch, pp), dtype=np.float32)
    )


def e2e_call(runner, paths: list[str], batch_size: int, pp: Preprocessing) -> Callable[[], object]:
    """A function that decodes, preprocesses and infers the next ``batch_size`` files."""
    cycle = itertools.cycle(paths)
    normalize = bool(getattr(runner, "normalized_input", True))

    def call():
        batch = np.stack(
            [
                image_to_input(load_rgb(p, pp.exif_transpose), pp, normalize=normalize)
                for p in itertools.islice(cycle, batch_size)
            ]
        )
        return runner.infer(batch)

    return call


@dataclass
class Target:
    """One activated backend to time: its runner and the labelled images it gets."""

    name: str
    runner: object
    x: np.ndarray  # normalised preprocessed images (N, 3, H, W), from the ladder
    paths: list[str]  # the same images' files, for end-to-end timing
    pp: Preprocessing  # the preprocessing those images went through


def split_runs(runs: int, rounds: int) -> list[int]:
    """``runs`` timed calls spread over ``rounds`` (earlier rounds take the remainder)."""
    rounds = max(1, min(rounds, runs))
    return [runs // rounds + (1 if r < runs % rounds else 0) for r in range(rounds)]


@dataclass
class _Schedule:
    """How each measurement is spread: timed calls per round, or seconds per round."""

    warmup: int
    plan: list
    per_round_s: float | None
    on_segment: Callable[[str, int, str, float, float], None] | None


def _calls(targets: list[Target], bs: int, kind: str) -> dict[str, Callable[[], object]]:
    calls = {}
    for t in targets:
        if kind == "model":
            batch = model_batch(t.x, bs, bool(getattr(t.runner, "normalized_input", True)), t.pp)
            calls[t.name] = lambda r=t.runner, b=batch: r.infer(b)
        else:
            calls[t.name] = e2e_call(t.runner, t.paths, bs, t.pp)
    return calls


def _time_kind(targets, calls, cuda: dict, sched: _Schedule, bs: int, kind: str):
    """Every backend's timed calls for one batch size and mode, in rotating rounds.

    Returns:
        ``({backend: stats}, {backend: gpu memory or None})``.
    """
    syncs = {t.name: getattr(t.runner, "synchronize", None) for t in targets}
    timers = {n: CudaEventTimer(c) if c is not None else None for n, c in cuda.items()}
    memory = {n: GpuMemory(c) if c is not None else None for n, c in cuda.items()}
    samples: dict[str, list[float]] = {t.name: [] for t in targets}
    for name, fn in calls.items():  # warm-up, untimed
        time_calls(fn, warmup=sched.warmup, runs=0, sync=syncs[name])
    order = [t.name for t in targets]
    for r, n in enumerate(sched.plan):
        for name in order[r % len(order) :] + order[: r % len(order)]:
            t0 = time.monotonic()
            with memory[name].segment() if memory[name] else nullcontext():
                samples[name] += time_calls(
                    calls[name],
                    warmup=0,
                    runs=n,
                    seconds=sched.per_round_s,
                    sync=syncs[name],
                    timer=timers[name],
                )
            if sched.on_segment:
                sched.on_segment(name, int(bs), kind, t0, time.monotonic())
    stats = {}
    for name, got in samples.items():
        stats[name] = summarize(got, bs)
        if timers[name] is not None:
            stats[name]["timer"] = CudaEventTimer.name
    return stats, {n: m.result() if m else None for n, m in memory.items()}


def measure(
    targets: list[Target],
    batch_sizes,
    *,
    warmup: int,
    runs: int | None = None,
    seconds: float | None = None,
    e2e: bool = True,
    rounds: int = 5,
    on_segment: Callable[[str, int, str, float, float], None] | None = None,
    progress: Callable[[], None] | None = None,
) -> list[dict]:
    """Time every target at every batch size, model only and end to end.

    The timed calls of one measurement are spread over ``rounds`` rounds, and each round
    times every backend in turn (the order rotates): a change of machine load or clocks
    during the bench then lands on all backends alike, so ratios between backends stay
    comparable on a busy machine. Each backend is warmed up once per batch size and mode.

    Args:
        on_segment: called ``(backend, batch_size, kind, t_start, t_end)`` (time.monotonic)
            around each timed segment, e.g. to attribute tegrastats samples.

    Returns:
        One entry per backend and batch size: ``{"backend", "batch_size", "model": stats,
        "e2e": stats | None, "rounds"}``; PyTorch on CUDA adds ``"gpu_memory": {mode:
        GpuMemory.result()}`` and its stats say ``"timer": "cuda-events"``.
    """
    kinds = ("model", "e2e") if e2e else ("model",)
    plan = split_runs(runs, rounds) if runs is not None else [None] * max(1, rounds)
    per_round_s = seconds / len(plan) if seconds is not None else None
    sched = _Schedule(warmup, plan, per_round_s, on_segment)
    cuda = {t.name: cuda_module(t.runner) for t in targets}
    entries = {
        (t.name, bs): {
            "backend": t.name,
            "batch_size": int(bs),
            "model": None,
            "e2e": None,
            "rounds": len(plan),
        }
        for bs in batch_sizes
        for t in targets
    }
    for bs in batch_sizes:
        for kind in kinds:
            stats, memory = _time_kind(targets, _calls(targets, bs, kind), cuda, sched, bs, kind)
            for name, st in stats.items():
                entries[(name, bs)][kind] = st
                if memory[name] is not None:
                    entries[(name, bs)].setdefault("gpu_memory", {})[kind] = memory[name]
            if progress:
                progress()
    return list(entries.values())
