"""Latency per backend and batch size: model only, and end to end from image files.

* **model**: ``runner.infer`` on a batch already decoded and preprocessed (real images
  from the bench's labelled set). It includes what ``infer`` does on every call: copying
  the numpy batch to the device and the outputs back.
* **e2e**: decode each image file (Pillow), preprocess it with the bundle's contract
  (:mod:`edgeft.preprocess`, the same code the runtime uses), stack, and infer: what a
  device spends per batch of files.

Each measurement warms up first (lazy initialisation, allocator growth, caches, GPU
clock ramp-up), then times ``runs`` calls, or as many as fit in ``seconds``. Timing uses
:func:`time.perf_counter` around each call with the garbage collector paused; runners
with a ``synchronize()`` (PyTorch on CUDA) are synchronised before and after each timed
call, so queued GPU work is neither left out nor counted twice.
"""

from __future__ import annotations

import gc
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgeft.parity import fold_input
from edgeft.preprocess import Preprocessing, image_to_input, load_rgb

#: --seconds still times at least this many calls, so percentiles mean something.
MIN_RUNS_FOR_SECONDS = 3


def time_calls(
    fn: Callable[[], object],
    *,
    warmup: int,
    runs: int | None = None,
    seconds: float | None = None,
    sync: Callable[[], None] | None = None,
) -> list[float]:
    """Call ``fn`` ``warmup`` times untimed, then time ``runs`` calls (or calls for ``seconds``).

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
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            samples.append((time.perf_counter() - t0) * 1e3)
    finally:
        if was_enabled:
            gc.enable()
    return samples


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
        "e2e": stats | None, "rounds"}``.
    """
    kinds = ("model", "e2e") if e2e else ("model",)
    plan = split_runs(runs, rounds) if runs is not None else [None] * max(1, rounds)
    per_round_s = seconds / len(plan) if seconds is not None else None
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
            calls = {}
            for t in targets:
                if kind == "model":
                    batch = model_batch(
                        t.x, bs, bool(getattr(t.runner, "normalized_input", True)), t.pp
                    )
                    calls[t.name] = lambda r=t.runner, b=batch: r.infer(b)
                else:
                    calls[t.name] = e2e_call(t.runner, t.paths, bs, t.pp)
            syncs = {t.name: getattr(t.runner, "synchronize", None) for t in targets}
            samples: dict[str, list[float]] = {t.name: [] for t in targets}
            for name, fn in calls.items():  # warm-up, untimed
                time_calls(fn, warmup=warmup, runs=0, sync=syncs[name])
            order = [t.name for t in targets]
            for r, n in enumerate(plan):
                for name in order[r % len(order) :] + order[: r % len(order)]:
                    t0 = time.monotonic()
                    samples[name] += time_calls(
                        calls[name], warmup=0, runs=n, seconds=per_round_s, sync=syncs[name]
                    )
                    if on_segment:
                        on_segment(name, int(bs), kind, t0, time.monotonic())
            for name, got in samples.items():
                entries[(name, bs)][kind] = summarize(got, bs)
            if progress:
                progress()
    return list(entries.values())
