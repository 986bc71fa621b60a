"""Every CPU form edgeft makes, on one bundle, in one process: ONNX Runtime FP32 and INT8,
OpenVINO FP32, bf16 (where the CPU has it) and INT8 (NNCF), each timed at batch 1 and 32
with one thread, backends taking turns round after round, with its accuracy, drop and top-1
agreement on the validation images and the time its export took (issue 11).

    python -m benchmarks.studies.cpu_forms --bundle runs/eurosat/bundle

The bundle is copied; each form is made with ``edgeft export`` on the copy (timed), then
measured through edgeft's own runners (:mod:`edgeft.formats`) and timing routine
(:func:`benchmarks.latency.time_calls`). Writes ``benchmarks/results/cpu_forms.json`` and
prints the table with the CPU's int8/bf16 instruction sets.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.latency import time_calls
from benchmarks.studies import RESULTS
from edgeft import formats
from edgeft.bundle import Bundle
from edgeft.labelled import load_labelled
from edgeft.parity import bundle_valid_samples, compare, run_batches
from edgeft.platform.cpu import cpu_isa

#: (what, `edgeft export` options) in build order; each adds forms to the bundle copy
EXPORTS = (
    ("onnx", ["--onnx"]),
    ("onnx-int8 (edgeft: ORT Q/DQ + sensitive layers in float)", ["--int8"]),
    ("openvino (IR)", ["--format", "openvino"]),
    ("openvino-int8 (NNCF, accuracy control when needed)", ["--format", "openvino-int8"]),
)
FORMS = (
    "torch",
    "onnx",
    "onnx-int8",
    "openvino",
    "openvino-bf16",
    "openvino-int8",
    "openvino-int8-bf16",
)
#: variants that are no form of their own: (label, runner's form, artifact it reads)
VARIANTS = (("openvino reading model-int8.onnx", "openvino", "onnx-int8"),)


def export_all(bundle: Path) -> list[dict]:
    """Run each export on ``bundle`` (a copy), timing it. An INT8 form that breaks the
    accuracy budget (exit 3) is made again with ``--no-check`` so that its speed and its
    figures are still measured (recorded as ``"gate": "broken"``)."""
    done = []
    for what, args in EXPORTS:
        for attempt in (args, [*args, "--no-check"]):
            t0 = time.perf_counter()
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "edgeft",
                    "export",
                    str(bundle),
                    *attempt,
                    "--force",
                    "--quiet",
                ],
                capture_output=True,
                text=True,
            )
            done.append(
                {
                    "what": what,
                    "args": attempt,
                    "seconds": round(time.perf_counter() - t0, 1),
                    "exit": proc.returncode,
                    "gate": "broken" if proc.returncode == 3 else "kept",
                    "error": proc.stderr.strip()[-600:] or None,
                }
            )
            print(done[-1], flush=True)
            if proc.returncode != 3:
                break
    return done


def _runners(b, names: list[str]) -> dict:
    """Activated runners (1 thread) of the forms that run here, and the variants."""
    runners = {}
    for name in names:
        ok, why = formats.status(name, b, "cpu")
        if ok:
            runners[name] = formats.make_runner(name, b, "cpu", threads=1)
            runners[name].activate()
        else:
            print(f"{name}: not measured ({why})")
    for label, form, artifact in VARIANTS:  # e.g. OpenVINO running edgeft's ORT Q/DQ file
        if form in runners and artifact in b.manifest.artifacts:
            runners[label] = formats.make_runner(
                form,
                b,
                "cpu",
                threads=1,
                path=b.artifact_path(artifact),
                record=b.artifact(artifact),
            )
            runners[label].activate()
    return runners


def measure(bundle: Path, rounds: int, runs: int, batch_sizes=(1, 32)) -> dict:
    """Accuracy, then -- with fresh runners, so that the accuracy pass leaves no state behind
    -- interleaved latency of every form that runs here."""
    b = Bundle.load(bundle)
    valid = load_labelled(bundle_valid_samples(b), b.labels, b.preprocessing)
    runners = _runners(b, list(FORMS))
    out = {n: run_batches(r, valid, 32, b.preprocessing) for n, r in runners.items()}
    rows = {n: compare(out["torch"], o, valid.targets, b.labels) for n, o in out.items()}
    for r in runners.values():
        r.deactivate()
    runners = _runners(b, list(FORMS))
    lat = {n: {bs: [] for bs in batch_sizes} for n in runners}
    for _ in range(rounds):
        for bs in batch_sizes:
            x = np.ascontiguousarray(valid.head(bs))
            for n, r in runners.items():
                lat[n][bs] += time_calls(lambda r=r, x=x: r.infer(x), warmup=5, runs=runs)
    for r in runners.values():
        r.deactivate()
    return {
        n: {
            "accuracy": f["accuracy"],
            "drop_pp": f["accuracy_drop_pp"],
            "agreement": f["agreement"],
            **{f"b{bs}_ms": float(np.median(lat[n][bs])) for bs in batch_sizes},
        }
        for n, f in rows.items()
    }


def main(argv=None) -> int:
    """Make every form on a copy of the bundle, measure them, write the JSON, print a table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--out", type=Path, default=RESULTS / "cpu_forms.json")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="edgeft-forms-") as tmp:
        copy = Path(tmp) / "bundle"
        shutil.copytree(args.bundle, copy)
        shutil.rmtree(copy / "calibration", ignore_errors=True)  # time calibration, not a cache
        exports = export_all(copy)
        load = os.getloadavg()
        rows = measure(copy, args.rounds, args.runs)
    base = rows.get("onnx")
    for r in rows.values():
        for bs in (1, 32):
            r[f"b{bs}_vs_ort_fp32"] = base[f"b{bs}_ms"] / r[f"b{bs}_ms"] if base else None
    res = {
        "bundle": str(args.bundle),
        "cpu": cpu_isa(),
        "threads": 1,
        "rounds": args.rounds,
        "runs": args.runs,
        "loadavg": load,
        "exports": exports,
        "forms": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"CPU: {res['cpu']['model']} ({', '.join(res['cpu']['isa'])}); load {load}")
    print(
        f"{'form':34} {'acc':>7} {'drop':>6} {'agree':>7} {'b1 ms':>7} {'x':>5} {'b32 ms':>8} {'x':>5}"
    )
    for n, r in rows.items():
        print(
            f"{n:34} {100 * r['accuracy']:6.2f}% {r['drop_pp']:+6.2f} {100 * r['agreement']:6.2f}% "
            f"{r['b1_ms']:7.2f} {r['b1_vs_ort_fp32'] or 0:5.2f} {r['b32_ms']:8.2f} {r['b32_vs_ort_fp32'] or 0:5.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
