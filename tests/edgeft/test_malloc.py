"""edgeft.platform.malloc: glibc serves large blocks from its heap and keeps them, so a
training step stops faulting its activations in again (counted in page faults, not time)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="the allocator tuning is for glibc on Linux",
)

# Allocate, touch and free a 64 MiB block (over glibc's largest mmap threshold) three
# times; print the minor page faults of the last round.
CHILD = r"""
import json, resource, sys
from edgeft.platform.malloc import keep_large_blocks
said = keep_large_blocks() if sys.argv[1] == "tuned" else "untouched"
def round_trip():
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = bytearray(64 << 20)  # calloc'd: the kernel's zero pages until written
    block[::4096] = b"x" * len(block[::4096])
    del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
faults = [round_trip() for _ in range(3)]
print(json.dumps({"said": said, "faults": faults[-1]}))
"""


def _child(mode: str, **env) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, mode],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=True,
    )
    return json.loads(proc.stdout)


def test_large_blocks_are_reused_instead_of_faulted_in_again():
    plain = _child("plain")
    tuned = _child("tuned")
    assert tuned["said"] == "glibc: heap, kept"
    assert plain["faults"] >= 16_000 * 0.9  # 64 MiB in 4 KiB pages, every round
    assert tuned["faults"] < plain["faults"] / 20  # the same pages, kept


def test_edgeft_malloc_default_leaves_glibc_alone():
    off = _child("tuned", EDGEFT_MALLOC="default")
    assert off["said"] == "glibc default (EDGEFT_MALLOC=default)"
    assert off["faults"] >= 16_000 * 0.9
