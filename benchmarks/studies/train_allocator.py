"""Does glibc's allocator slow CPU training down? Training steps with and without
transparent huge pages for malloc (``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``, glibc 2.35+).

Why: glibc serves every allocation above its mmap threshold (32 MiB at most on 64-bit) with
a fresh ``mmap`` and returns it on ``free``, so each training step faults its large
activations in again, 4 KiB at a time. MobileNetV2's first activation at batch 32 and
224 px is 51 MiB (25.7 at batch 16, under the threshold, which glibc raises as it sees
large frees). Measured while an Imagenette fine-tune ran at batch 32: 170,000 page faults a
second, about a third of the CPU time in the kernel. With ``hugetlb=1`` glibc asks for
2 MiB pages (``madvise``), 512x fewer faults.

Each setting runs in its own process (the tunable is read at process start), settings
taking turns round after round: MobileNetV2 (random init: speed only), channels-last,
SGD steps on random data with the thread count edgeft trains with, median step time and
minor page faults per step. Writes ``benchmarks/results/train_allocator.json``.

    python -m benchmarks.studies.train_allocator --batch-sizes 16,32 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from benchmarks.studies import RESULTS
from edgeft.atomic import write_json_atomic

#: name -> (GLIBC_TUNABLES, mallopt calls made in the process before training)
SETTINGS = {
    "glibc default": (None, False),
    "glibc.malloc.hugetlb=1": ("glibc.malloc.hugetlb=1", False),
    "mallopt: no mmap, no trim": (None, True),
}
CHILD = r"""
import json, resource, sys, time
from edgeft.platform.tvfix import ensure_torchvision
import torch
tv = ensure_torchvision()
bs, size, steps, threads, no_mmap = (int(a) for a in sys.argv[1:6])
if no_mmap:
    import ctypes
    libc = ctypes.CDLL("libc.so.6")
    assert libc.mallopt(-4, 0) == 1  # M_MMAP_MAX: every block from the heap, reused
    assert libc.mallopt(-1, 2**31 - 1) == 1  # M_TRIM_THRESHOLD: keep freed memory
torch.manual_seed(0)
torch.set_num_threads(threads)
m = tv.models.mobilenet_v2(num_classes=10).to(memory_format=torch.channels_last).train()
opt = torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9)
x = torch.randn(bs, 3, size, size).to(memory_format=torch.channels_last)
y = torch.randint(0, 10, (bs,))
times, faults = [], []
for i in range(steps + 2):
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t0 = time.perf_counter()
    opt.zero_grad()
    torch.nn.functional.cross_entropy(m(x), y).backward()
    opt.step()
    if i >= 2:  # the first steps allocate for good
        times.append(time.perf_counter() - t0)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"times": times, "faults": faults, "peak_rss_mb": rss}))
"""


def run_child(setting: tuple, bs: int, size: int, steps: int, threads: int) -> dict:
    """One process of ``steps`` timed training steps under ``setting`` (see SETTINGS)."""
    tunable, no_mmap = setting
    env = dict(os.environ)
    env.pop("GLIBC_TUNABLES", None)
    if tunable:
        env["GLIBC_TUNABLES"] = tunable
    args = (bs, size, steps, threads, int(no_mmap))
    cmd = [sys.executable, "-c", CHILD, *map(str, args)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _thp() -> str:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return f.read().strip()
    except OSError:
        return "unknown"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-sizes", default="16,32")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", default=str(RESULTS / "train_allocator.json"))
    args = ap.parse_args(argv)
    from edgeft.platform.cpu import describe_cpu

    rows = []
    for bs in (int(b) for b in args.batch_sizes.split(",")):
        got: dict[str, dict] = {name: {"times": [], "faults": [], "rss": []} for name in SETTINGS}
        for _ in range(args.rounds):
            for name, setting in SETTINGS.items():
                r = run_child(setting, bs, args.size, args.steps, args.threads)
                got[name]["times"] += r["times"]
                got[name]["faults"] += r["faults"]
                got[name]["rss"].append(r["peak_rss_mb"])
        base = statistics.median(got["glibc default"]["times"])
        for name, g in got.items():
            med = statistics.median(g["times"])
            rows.append(
                {
                    "batch_size": bs,
                    "setting": name,
                    "step_ms": med * 1e3,
                    "images_per_s": bs / med,
                    "faults_per_step": statistics.median(g["faults"]),
                    "speedup": base / med,
                    "peak_rss_mb": max(g["rss"]),
                    "steps": len(g["times"]),
                }
            )
            print(
                f"batch {bs:3d}  {name:24s} {med * 1e3:8.1f} ms/step  {bs / med:6.1f} img/s  "
                f"{statistics.median(g['faults']):9.0f} faults/step  {base / med:5.2f}x  "
                f"peak RSS {max(g['rss']):6.0f} MB",
                flush=True,
            )
    rec = {
        "cpu": describe_cpu(),
        "threads": args.threads,
        "size": args.size,
        "rounds": args.rounds,
        "loadavg": os.getloadavg(),
        "glibc": os.confstr("CS_GNU_LIBC_VERSION"),
        "thp": _thp(),
        "rows": rows,
    }
    write_json_atomic(args.out, rec)
    print(f"CPU: {rec['cpu']}; {rec['glibc']}; THP {rec['thp']}")


if __name__ == "__main__":
    main()
