"""Peak memory of ``edgeft bench --data`` and ``edgeft export --int8 --calib-data`` at 1,000
and 4,000 labelled images: it must not grow with the image count (issue 11: bench used to
hold every decoded image: 0.81 GB at 1,000 and 1.91 GB at 4,000 images, 128 px).

    python -m benchmarks.studies.bench_memory --bundle runs/eurosat/bundle

The image folders are EuroSAT-200's files repeated as symbolic links under the bundle's
class names (``$EDGEFT_ASSETS/datasets/eurosat_rgb_200pc``). Each command runs in a child
of a fresh Python process, and that process reports its children's peak RSS
(``getrusage(RUSAGE_CHILDREN).ru_maxrss``), so one measurement never sees another's peak.
Writes ``benchmarks/results/bench_memory.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.studies import RESULTS, ROOT

ASSETS = Path(os.environ.get("EDGEFT_ASSETS", ROOT.parent / "shared" / "assets"))
PEAK = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=False, "
    "stdout=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def make_folder(src: Path, labels: list[str], n: int, dst: Path) -> Path:
    """``dst/<label>/NNNNN_<file>`` links cycling over ``src``'s images of each label."""
    per = {lb: sorted((src / lb).iterdir()) for lb in labels}
    for i in range(n):
        lb = labels[i % len(labels)]
        files = per[lb]
        (dst / lb).mkdir(parents=True, exist_ok=True)
        f = files[(i // len(labels)) % len(files)]
        os.symlink(f, dst / lb / f"{i:05d}_{f.name}")
    return dst


def peak_rss_mb(argv: list[str]) -> float:
    """Peak resident memory of the command ``argv``, in MB."""
    out = subprocess.run(
        [sys.executable, "-c", PEAK, *argv], capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def measure(bundle: Path, counts=(1000, 4000)) -> dict:
    """Peak RSS of bench --data and export --int8 --calib-data at each image count."""
    from edgeft.bundle import Bundle
    from edgeft.platform.cpu import cpu_isa

    labels = Bundle.load(bundle).labels
    edgeft = [sys.executable, "-m", "edgeft"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgeft-mem-") as tmp:
        tmp = Path(tmp)
        copy = tmp / "bundle"
        shutil.copytree(bundle, copy)
        for n in counts:
            data = make_folder(ASSETS / "datasets" / "eurosat_rgb_200pc", labels, n, tmp / f"d{n}")
            bench = [*edgeft, "bench", str(copy), "--data", str(data), "--backends", "onnx"]
            bench += [
                "--batch-sizes",
                "1",
                "--runs",
                "3",
                "--rounds",
                "1",
                "--out",
                str(tmp / "r"),
                "--quiet",
            ]
            export = [*edgeft, "export", str(copy), "--int8", "--force", "--no-check", "--quiet"]
            export += ["--calib-data", str(data)]  # a large folder; --calib-count stays 200
            rows.append(
                {"images": n, "bench_mb": peak_rss_mb(bench), "export_int8_mb": peak_rss_mb(export)}
            )
            print(rows[-1], flush=True)
    first, last = rows[0], rows[-1]
    return {
        "bundle": str(bundle),
        "input": list(Bundle.load(bundle).preprocessing.size),
        "rows": rows,
        "growth": {k: last[k] / first[k] - 1 for k in ("bench_mb", "export_int8_mb")},
        "cache_budget_mb": int(os.environ.get("EDGEFT_IMAGE_CACHE_MB", "256")),
        "cpu": cpu_isa(),
    }


def main(argv=None) -> int:
    """Measure and write ``benchmarks/results/bench_memory.json``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=RESULTS / "bench_memory.json")
    args = ap.parse_args(argv)
    res = measure(args.bundle)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    g = res["growth"]
    print(
        f"peak RSS growth 1,000 -> 4,000 images: bench {100 * g['bench_mb']:+.1f}%, "
        f"export --int8 {100 * g['export_int8_mb']:+.1f}% (limit 15%)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
