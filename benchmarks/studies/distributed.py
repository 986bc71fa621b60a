"""Fine-tuning across processes on one CPU machine: 1 process x 2 threads vs 2 processes x 1
thread (torchrun, gloo), bf16 vs fp32, and ``edgeft compare --jobs 2`` vs ``--jobs 1``.

Same data, split, epochs, weights and effective batch for every form: ``edgeft finetune`` on
EuroSAT-200 with MobileNetV2's ImageNet weights, 1 frozen + 1 unfrozen epoch, batch 64 in one
process or 2 x 32 under torchrun (``--lr-scale none``: the same LR); plus torchrun's default
(2 x 64, ``--lr-scale linear``) and one process with one thread (a control for contention). Forms run interleaved, ``--rounds`` times, each as its own
command (wall time = command start to exit, imports and data scan included; ``train_s`` =
the bundle's recorded training time). The CPU is named and the load average recorded before
and after every run: these machines are shared, so read ratios within a round.

Run: ``python -m benchmarks.studies.distributed --data DATA --weights W.pth``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.studies import RESULTS

FORMS = {
    # name: (processes, threads per process, extra finetune args)
    "1proc-2thr-fp32": (1, 2, ["--batch-size", "64"]),
    # control: is a 2-thread process slowed by a busy machine (OpenMP threads wait for a
    # descheduled sibling at every parallel region) rather than helped by the second core?
    "1proc-1thr-fp32": (1, 1, ["--batch-size", "64"]),
    "2proc-1thr-fp32": (2, 1, ["--batch-size", "32", "--lr-scale", "none"]),
    "2proc-1thr-fp32-linear": (2, 1, ["--batch-size", "64", "--lr-scale", "linear"]),
    "1proc-2thr-bf16": (1, 2, ["--batch-size", "64", "--precision", "bf16"]),
    "1proc-1thr-bf16": (1, 1, ["--batch-size", "64", "--precision", "bf16"]),
}


def _command(procs: int, args: list[str]) -> list[str]:
    if procs == 1:
        return [sys.executable, "-m", "edgeft", *args]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    return [*launcher, "--nproc_per_node", str(procs), "-m", "edgeft", *args]


def _timed(cmd: list[str], threads: int) -> tuple[float, tuple, tuple]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{p.stderr[-3000:]}")
    return wall, load0, os.getloadavg()


def run_form(name: str, data: Path, weights: str, size: int, out: Path) -> dict:
    """One fine-tune in form ``name``; returns its times, accuracy and recorded setup."""
    procs, threads, extra = FORMS[name]
    args = ["finetune", "--data", str(data), "--arch", "mobilenet_v2", "--weights", weights,
            "--size", str(size), "--epochs", "1", "--freeze-epochs", "1", "--quiet",
            "--force", "--out", str(out), *extra]  # fmt: skip
    wall, load0, load1 = _timed(_command(procs, args), threads)
    m = json.loads((out / "bundle.json").read_text())
    tr = m["training"]
    return {
        "form": name,
        "processes": procs,
        "threads_per_process": tr["threads"],
        "precision": tr["precision"],
        "distributed": tr["distributed"],
        "lr": tr["lr"],
        "wall_s": round(wall, 1),
        "train_s": round(tr["train_seconds"], 1),
        "epoch_s": [round(h["seconds"], 1) for h in tr["history"]],
        "accuracy": m["metrics"]["valid"]["accuracy"],
        "loadavg_before": load0,
        "loadavg_after": load1,
    }


def run_compare_jobs(data: Path, weights: str, size: int, tmp: Path) -> dict:
    """``edgeft compare`` (head, full: 2 runs) with --jobs 1 (2 threads) and --jobs 2 (1 each)."""
    rows = {}
    for jobs in (1, 2):
        out = tmp / f"compare-j{jobs}"
        cmd = [sys.executable, "-m", "edgeft", "compare", "--data", str(data),
               "--arch", "mobilenet_v2", "--weights", weights, "--size", str(size),
               "--epochs", "2", "--strategies", "head,full", "--out", str(out),
               "--jobs", str(jobs), "--force"]  # fmt: skip
        wall, load0, load1 = _timed(cmd, 2)
        s = json.loads((out / "compare.json").read_text())
        rows[f"jobs{jobs}"] = {
            "wall_s": round(wall, 1),
            "threads_per_run": s["threads_per_run"],
            "accuracy": {r["name"]: r["accuracy"] for r in s["runs"]},
            "loadavg_before": load0,
            "loadavg_after": load1,
        }
    return rows


def summarize(runs: list[dict]) -> dict:
    """Per form: mean wall/train time and accuracy, and per-round training-time ratios to the
    baseline (1proc-2thr-fp32, or 1proc-1thr-fp32 when the former was not run)."""
    forms = {}
    for name in FORMS:
        rs = [r for r in runs if r["form"] == name]
        if not rs:
            continue
        base = [r for r in runs if r["form"] == "1proc-2thr-fp32"] or [
            r for r in runs if r["form"] == "1proc-1thr-fp32"
        ]
        forms[name] = {
            "wall_s": round(sum(r["wall_s"] for r in rs) / len(rs), 1),
            "train_s": round(sum(r["train_s"] for r in rs) / len(rs), 1),
            "accuracy": [r["accuracy"] for r in rs],
            "train_time_ratio_to_baseline": [
                round(r["train_s"] / b["train_s"], 2) for r, b in zip(rs, base, strict=False)
            ],
        }
    return forms


def markdown(result: dict) -> str:
    """The study's table (for the README)."""
    lines = [
        f"CPU: {result['cpu']}; EuroSAT-200 at {result['size']} px, MobileNetV2 (ImageNet "
        f"weights), 1 frozen + 1 unfrozen epoch, {result['rounds']} interleaved round(s); load "
        f"average {result['loadavg_start']} at start, {result['loadavg_end']} at end.",
        "",
        "| form | processes x threads | batch (per process x processes) | LR | "
        f"training s | wall s | training time vs {result['baseline']} | accuracy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, f in result["summary"].items():
        r = next(x for x in result["runs"] if x["form"] == name)
        d = r["distributed"]
        accs = ", ".join(f"{100 * a:.2f}%" for a in f["accuracy"])
        ratios = ", ".join(f"{x:.2f}x" for x in f["train_time_ratio_to_baseline"])
        lines.append(
            f"| {name} | {r['processes']} x {r['threads_per_process']} | "
            f"{d['batch_size_per_process']} x {d['world_size']} | {r['lr']:g} | "
            f"{f['train_s']} | {f['wall_s']} | {ratios} | {accs} |"
        )
    if result.get("compare_jobs"):
        cj = result["compare_jobs"]
        lines += [
            "",
            f"`edgeft compare` (head, full; 2 epochs): --jobs 1 (2 threads) "
            f"{cj['jobs1']['wall_s']} s, --jobs 2 (1 thread each) {cj['jobs2']['wall_s']} s.",
        ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--weights", required=True, help="mobilenet_v2-b0353104.pth")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--forms", default=",".join(FORMS), help="comma-separated subset")
    ap.add_argument("--no-compare", action="store_true", help="skip compare --jobs")
    ap.add_argument("--out", type=Path, default=RESULTS / "distributed")
    args = ap.parse_args(argv)
    from edgeft.platform.cpu import cpu_isa, describe_cpu

    forms = [f for f in args.forms.split(",") if f]
    if not cpu_isa()["bf16"]:
        forms = [f for f in forms if "bf16" not in f]  # edgeft refuses emulated bf16
    load_start, runs = os.getloadavg(), []
    with tempfile.TemporaryDirectory(prefix="edgeft-distributed-") as tmp:
        for rnd in range(args.rounds):
            for name in forms:
                r = run_form(name, args.data, args.weights, args.size, Path(tmp) / name)
                r["round"] = rnd
                runs.append(r)
                print(json.dumps(r), flush=True)
        compare = None if args.no_compare else run_compare_jobs(
            args.data, args.weights, args.size, Path(tmp)
        )  # fmt: skip
    result = {
        "cpu": describe_cpu(),
        "cpu_isa": cpu_isa(),
        "cores": len(os.sched_getaffinity(0)),
        "data": str(args.data),
        "size": args.size,
        "rounds": args.rounds,
        "loadavg_start": [round(x, 2) for x in load_start],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "runs": runs,
        "summary": summarize(runs),
        "baseline": "1proc-2thr-fp32" if "1proc-2thr-fp32" in forms else "1proc-1thr-fp32",
        "compare_jobs": compare,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "distributed.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "distributed.md").write_text(markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
