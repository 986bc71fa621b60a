"""``edgeft compare --jobs N``: the comparison's independent runs in N worker processes.

Each run is a whole fine-tune with its own seeds, so runs can go in any order and in
parallel; each worker gets ``cores / N`` threads (or ``--threads``) so N runs share the
machine instead of oversubscribing it.

A run's numbers depend on its seeds *and* on its thread count (CPU kernels split their
float sums by thread, and a few last bits change the trajectory of training): two
comparisons with the same seeds and the same threads per run agree to the bit whatever
``--jobs`` is; ``--jobs 2`` on 2 cores equals ``--jobs 1 --threads 1``, not ``--jobs 1``.

Workers are *spawned* (not forked: a forked copy of a process that already holds torch's
thread pools can deadlock), and each finished run still writes its bundle and then
``result.json`` atomically, so a killed comparison resumes as before.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator


def cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def threads_per_job(jobs: int) -> int:
    """Intra-op threads for each of ``jobs`` workers: ``cores / jobs``, at least 1."""
    return max(1, cores() // max(1, jobs))


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """This process's torch intra-op threads set to ``threads`` inside the block."""
    if threads is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _init_worker(threads: int) -> None:
    import torch

    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


def run_parallel(
    pending: list, fn: Callable, jobs: int, threads: int
) -> Iterator[tuple[int, dict]]:
    """Run ``fn(*args)`` for every ``(index, args)`` of ``pending`` in ``jobs`` spawned
    processes of ``threads`` threads each; yields ``(index, result)`` as runs finish.

    ``fn`` must be a module-level function (it travels to the workers by name). An error in
    a run (a :class:`~edgeft.errors.UserError` included) is re-raised here once the runs
    already under way have finished (their results are kept); queued runs are cancelled.
    """
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=ctx,
        initializer=_init_worker,
        initargs=(threads,),
    ) as pool:
        futures = {pool.submit(fn, *args): index for index, args in pending}
        todo = set(futures)
        try:
            while todo:
                done, todo = wait(todo, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield futures[fut], fut.result()
        finally:
            for fut in todo:
                fut.cancel()
