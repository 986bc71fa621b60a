"""Are bench latencies stable enough to compare? Run ``edgeft bench`` twice, compare ratios.

Absolute milliseconds move with the machine's load; ratios measured within one run
(ONNX Runtime FP32 over PyTorch eager, INT8 over FP32) should not. This runs the same
bench twice (model-only latency per backend and batch size; each ratio is the median of
per-round ratios, the backends being timed back to back in every round) and reports, for
each ratio, both values and their relative difference; it exits 1 when any ratio moved by
more than ``--tolerance`` (default 15%).

    python -m benchmarks.studies.bench_stability BUNDLE [--runs 50] [--threads 1] [--batch-sizes 1]

Run it on a quiet machine: another process competing for the cores makes PyTorch's
thread pool stall far more than ONNX Runtime's, which is what the ratio then measures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

#: (name, numerator backend, denominator backend)
RATIOS = (("ORT FP32 / PyTorch", "onnx", "torch"), ("ORT INT8 / ORT FP32", "onnx-int8", "onnx"))


def _round_medians(entry: dict) -> list[float]:
    """Median of each round's timed calls (the samples are stored round by round)."""
    from benchmarks.latency import split_runs

    samples = entry["model"]["samples_ms"]
    out, i = [], 0
    for n in split_runs(len(samples), entry.get("rounds", 1)):
        out.append(float(np.median(samples[i : i + n])))
        i += n
    return out


def ratios(report: dict) -> dict[str, dict[int, float]]:
    """Paired model-only latency ratios of one report: ``{ratio name: {batch size: ratio}}``.

    Within each round the backends were timed back to back, so the ratio of their round
    medians sees the same machine load; the median of those per-round ratios is the
    estimate (a burst of load in one round moves one of them, not the result).
    """
    entries = {(e["backend"], e["batch_size"]): e for e in report["latency"]}
    out: dict[str, dict[int, float]] = {}
    for name, num, den in RATIOS:
        for (backend, bs), e in entries.items():
            if backend == num and (den, bs) in entries:
                a, b = _round_medians(e), _round_medians(entries[(den, bs)])
                out.setdefault(name, {})[bs] = float(
                    np.median([x / y for x, y in zip(a, b, strict=False)])
                )
    return out


def compare_runs(a: dict, b: dict, tolerance: float) -> list[dict]:
    """Rows ``{ratio, batch_size, first, second, change, ok}`` for two reports' ratios."""
    ra, rb = ratios(a), ratios(b)
    rows = []
    for name in ra:
        for bs, first in ra[name].items():
            second = rb.get(name, {}).get(bs)
            if second is None:
                continue
            change = abs(second - first) / first
            rows.append(
                {
                    "ratio": name,
                    "batch_size": bs,
                    "first": first,
                    "second": second,
                    "change": change,
                    "ok": change <= tolerance,
                }
            )
    return rows


def _print(rows: list[dict], reports: list[dict]) -> None:
    print(f"{'ratio':22} {'batch':>5} {'run 1':>7} {'run 2':>7} {'change':>7}")
    for r in rows:
        print(
            f"{r['ratio']:22} {r['batch_size']:>5} {r['first']:7.3f} {r['second']:7.3f} "
            f"{100 * r['change']:6.1f}% {'ok' if r['ok'] else 'MOVED'}"
        )
    p50 = [
        {(e["backend"], e["batch_size"]): round(e["model"]["p50_ms"], 3) for e in r["latency"]}
        for r in reports
    ]
    print("p50 ms, run 1:", {f"{k[0]}@{k[1]}": v for k, v in p50[0].items()})
    print("p50 ms, run 2:", {f"{k[0]}@{k[1]}": v for k, v in p50[1].items()})
    print("load average at start:", [r["environment"]["cpu"].get("loadavg") for r in reports])


def main(argv=None) -> int:
    """Run the bench twice and print the ratio table; 0 when every ratio repeats within tolerance."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-sizes", default="1")
    ap.add_argument(
        "--tolerance", type=float, default=0.15, help="largest relative change of a ratio"
    )
    ap.add_argument(
        "--out", type=Path, default=None, help="write both reports and stability.json here"
    )
    args = ap.parse_args(argv)

    from benchmarks.bench import BenchOptions, run_bench
    from edgeft.errors import ParityError, UserError
    from edgeft.options import parse_int_list

    out = args.out or Path(tempfile.mkdtemp(prefix="edgeft-stability-"))
    reports = []
    for i in (1, 2):
        opts = BenchOptions(
            bundle=args.bundle,
            data=args.data,
            backends=["torch", "onnx", "onnx-int8"],
            batch_sizes=parse_int_list(args.batch_sizes),
            warmup=args.warmup,
            runs=args.runs,
            rounds=args.rounds,
            threads=args.threads,
            out=out / f"run{i}",
            e2e=False,
            quiet=True,
            tolerances=["int8.max_accuracy_drop=100", "int8.min_agreement=0"],
        )
        try:
            reports.append(run_bench(opts))
        except ParityError:  # the ladder is not what this measures; the report is written
            reports.append(json.loads((out / f"run{i}" / "report.json").read_text()))
        except UserError as exc:
            print(f"bench_stability: error: {exc}", file=sys.stderr)
            return 2
    rows = compare_runs(reports[0], reports[1], args.tolerance)
    if not rows:
        print(
            "bench_stability: error: the bundle needs onnx and onnx-int8 artifacts", file=sys.stderr
        )
        return 2
    _print(rows, reports)
    (out / "stability.json").write_text(
        json.dumps({"tolerance": args.tolerance, "rows": rows}, indent=1)
    )
    print(f"reports in {out}")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
