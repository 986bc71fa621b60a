"""glibc's allocator and CPU training: reuse large blocks instead of mapping them anew.

glibc serves every block above its mmap threshold (32 MiB at most on 64-bit) with a fresh
``mmap`` and unmaps it on ``free``, so each CPU training step faults its large activations
in again, 4 KiB at a time (MobileNetV2's first activation at batch 32 and 224 px is
51 MiB). Measured while an Imagenette fine-tune ran: 170,000 page faults a second, about a
third of the CPU time in the kernel; ``benchmarks/studies/train_allocator.py`` times the
training step with and without the fix below (MobileNetV2, 224 px, 2 threads: 1.56x at
batch 16, 2.74x at batch 32, page faults per step to 0, peak memory +8% / +22%).

The fix is two ``mallopt`` calls: every block from the heap (``M_MMAP_MAX`` 0) and freed
memory kept for the next step (``M_TRIM_THRESHOLD`` at its maximum). A preloaded jemalloc
or tcmalloc would do it too, but must be in place before the process starts and is not a
dependency; glibc's own tunables (``GLIBC_TUNABLES``) are read at process start as well.
These calls work in the running process, once, before training allocates. The process
then keeps its peak memory until it exits (it did not grow beyond it: see the study).
``EDGEFT_MALLOC=default`` leaves glibc as it is.
"""

from __future__ import annotations

import ctypes
import os
import platform

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
_applied: bool | None = None


def keep_large_blocks() -> str:
    """Make glibc serve every block from its heap and keep freed memory (idempotent).

    Returns what the process runs with, for the training record: ``"glibc: heap, kept"``,
    ``"glibc default (EDGEFT_MALLOC=default)"``, or why nothing was changed.
    """
    global _applied
    if os.environ.get("EDGEFT_MALLOC", "").strip().lower() == "default":
        return "glibc default (EDGEFT_MALLOC=default)"
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return f"unchanged ({platform.system()}, not glibc)"
    if _applied is None:
        try:
            libc = ctypes.CDLL(None)  # the C library this process already runs on
            _applied = bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(
                libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)
            )
        except (OSError, AttributeError):
            _applied = False
    return "glibc: heap, kept" if _applied else "unchanged (mallopt refused)"
